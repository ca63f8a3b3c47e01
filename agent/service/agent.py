"""The agent as front ends use it: send a message, decide on an approval, read the outcome.

Every front end (terminal, Slack) goes through ``Agent`` so they all get the same policy and the same
checkpointed state; a pending approval survives a restart because it lives in the checkpoint (SQLite, or
PostgreSQL when ``CACHEBOT_DATABASE_URL`` / ``storage.database_url`` says so: ``agent/storage/``).
While a run goes, ``on_event`` hears typed progress events (``agent/service/events.py``), never node names.
The nodes are async: each call runs the graph on an event loop of its own, so the methods here stay synchronous.
Every request, plan, decision and result is also written to the audit trail (``agent/storage/audit.py``): the plan as
soon as it is made and each purge answer as soon as its layer gives it (``ProgressRecorder``), so a run that fails
later still leaves the record of what was sent. A run that fails with an error does not raise: the result says
what happened and what was sent (``RunResult.error``), and the audit row is marked "error".
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from langgraph.types import Command

from agent.config import AppConfig
from agent.graph import build_graph
from agent.models import (
    ApprovalRecord, CheckResult, Intent, Plan, PurgeOutcome, PurgeStatus, Rejection, RunResult,
)
from agent.nodes.common import unverified_results
from agent.policy import is_expired, refuse_approver, refuse_request_again
from agent.service.events import EventHandler, EventReader, Executing
from agent.service.leases import Heartbeat
from agent.state import AgentContext, checkpoint_serializer, new_request
from agent.storage import Storage
from agent.storage.audit import HistoryEntry
from agent.storage.checkpoints import ATTEMPT_KEY, REQUEST_ID_KEY, RESUMED_AT_KEY
from agent.storage.in_flight import FIRST, REPAIR
from agent.storage.runs import ACCEPTED, FINISHED
from agent.telemetry import run_spans
from agent.urls import screen_urls
from agent.words import failure_reply, history_reply, waiting_reply

log = logging.getLogger(__name__)

ERROR_TEXT_CHARS = 200  # of an error's message shown to the user: enough to act on, never a page of it


class NothingPending(Exception):
    """There is no approval waiting on this thread (it was decided, expired, or never existed)."""


class NotAllowed(Exception):
    """Policy refused what was asked (``agent.policy``); the message says why."""


class DeadlinePassed(Exception):
    """A run went past its whole budget (``Agent.run_budget``) and was stopped."""


class Superseded(Exception):
    """The request a front end accepted was picked up by another process (a sweeper) while it waited to run."""


SYSTEM_USER = "cachebot"  # who the audit names for what cachebot decided by itself (an approval expiring)


@dataclass(frozen=True)
class Offer:
    """What a question about purging left open: purge exactly these URLs, or just check them.

    ``id`` is the thread's checkpoint when the question was answered: any later request on the thread moves it,
    so an old offer's buttons cannot act on a newer request. The URLs are the screened ones from the stored run."""

    id: str
    urls: list[str]
    pages: int


def not_fresh_pages(urls: list[str], checks: list[CheckResult]) -> list[str]:
    """The checked pages some layer serves stale, or that a layer could not vouch for while holding them. A page
    whose origin itself is failing is not offered: purging it would swap the caches' last good copy for the
    origin's error."""
    failing = {c.url for c in checks if c.origin_problem}
    return [url for url in urls if url not in failing
            and any(c.fresh is False or (c.fresh is None and c.cached is not False) for c in checks if c.url == url)]


class Agent:
    def __init__(
        self,
        config: AppConfig,
        *,
        context: AgentContext | None = None,
        checkpoint_path: str | None = None,
        database_url: str | None = None,
    ):
        self.config = config
        self.context = context or AgentContext(config=config)
        # one decision places every store (agent/storage): SQLite files next to the checkpoints, or PostgreSQL
        self.storage = Storage.open(config, checkpoint_path=checkpoint_path, database_url=database_url,
                                    serde=checkpoint_serializer())
        self.database_url = self.storage.url
        self.audit = self.storage.audit
        self.audit.prune(older_than_days=config.storage.retention_days, now=self.context.now())
        if self.context.audit is None:
            self.context.audit = self.audit  # the report node answers "history" questions from it
        # execute notes each batch here before sending it; a run's next holder reads it (continue_run)
        self.purges_in_flight = self.storage.purges_in_flight
        if self.context.purge_journal is None:
            self.context.purge_journal = self.purges_in_flight
        # the sync saver reads state (snapshot, result) and sets the tables up; each run streams through an async
        # saver of its own on the same tables (``_stream``)
        self.graph = build_graph().compile(checkpointer=self.storage.checkpointer)
        # one lock per thread across processes (PostgreSQL advisory lock / flock next to the SQLite files)
        self.locks = self.storage.locks
        # every run's lease (cachebot_runs), beaten while held: what sweepers and crash recovery look at
        self.runs = self.storage.runs
        self.heartbeat = Heartbeat(self.runs, beat_seconds=config.recovery.lease_seconds / 3)

    def close(self) -> None:
        self.heartbeat.close()
        self.storage.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------------

    def ask(
        self,
        message: str,
        *,
        user: str,
        channel: str | None = None,
        dry_run: bool = False,
        thread_id: str | None = None,
        on_event: EventHandler | None = None,
        interface: str | None = None,
        chosen_intent: Intent | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> RunResult:
        """``interface`` is recorded in the audit ("cli", "slack"); by default "slack" when a channel is
        given, else "cli". ``chosen_intent`` (purge or check) is what the person picked from an offer
        (``take_offer``); the message is then not interpreted, but screened and planned like any other.

        ``reply_to``: the front end posts the final message itself (Slack): the run's lease stays ``answering``
        until it calls ``answered`` (a process dying before then leaves it for a sweeper to answer). With a
        ``key`` in it, a request a front end ``accept``-ed is run only if nobody picked it up meanwhile
        (``Superseded`` otherwise)."""
        thread_id = thread_id or uuid.uuid4().hex
        with self._serialised(thread_id):
            return self.ask_locked(message, user=user, channel=channel, dry_run=dry_run, thread_id=thread_id,
                                   on_event=on_event, interface=interface, chosen_intent=chosen_intent,
                                   reply_to=reply_to)

    def ask_locked(self, message: str, *, user: str, thread_id: str, channel: str | None = None,
                   dry_run: bool = False, on_event: EventHandler | None = None, interface: str | None = None,
                   chosen_intent: Intent | None = None, reply_to: dict[str, Any] | None = None,
                   request_id: str | None = None) -> RunResult:
        """``ask`` for a caller already holding the thread's lock (a sweeper taking over an accepted request).
        ``request_id``: the id a lease already gave this request (a takeover of a run that never got going)."""
        interface = interface or ("slack" if channel else "cli")
        self._not_superseded(thread_id, reply_to)
        request = new_request(message, user=user, channel=channel, dry_run=dry_run,
                              chosen_intent=chosen_intent.value if chosen_intent else None)
        # the lease names the request before its record exists: a process killed in between leaves a lease a
        # takeover runs under that same id (one record per request), not one that looks finished
        request_id = request_id or uuid.uuid4().hex
        with self._leased(thread_id, interface=interface, channel=channel, reply_to=reply_to,
                          request_id=request_id):
            self.audit.request_received(
                thread_id=thread_id, user=user, interface=interface,
                channel=channel, text=message, dry_run=dry_run, at=self.context.now(), request_id=request_id,
            )
            failure = self._run_recorded(request, thread_id, on_event, request_id, interface=interface,
                                         channel=channel)
            if failure is not None:
                return self._identified(failure, request_id)
            result = self._identified(self.result(thread_id), request_id)
            self.record_result(request_id, thread_id, result)
            return result

    def decide(
        self,
        thread_id: str,
        decision: Literal["approve", "deny"],
        *,
        user: str,
        interrupt_id: str | None = None,
        on_event: EventHandler | None = None,
        interface: str | None = None,
        claim: str | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> RunResult:
        """Resume a waiting run with a person's decision. The graph itself decides whether they may.

        ``interface`` is recorded in the audit; by default the interface the request came from.
        ``claim``: the exactly-once key of this decision, claimed under the thread's lock. A claim already taken
        while the same interrupt is still pending was left by a process that died before its decision landed
        (whoever claims holds the lock until the decision is in the checkpoint, or gives the claim back), so it
        is stale and this decision goes ahead: a second click after a crash works.
        ``reply_to``: as for ``ask``."""
        with self._serialised(thread_id):
            snapshot = self.snapshot(thread_id)  # one read for every check below
            pending = snapshot.interrupts[0] if snapshot.interrupts else None
            if pending is None:
                raise NothingPending(nothing_pending_reason(snapshot.values))
            if interrupt_id is not None and interrupt_id != pending.id:
                raise NothingPending("that approval request is no longer current; use the latest one")
            if claim is not None and not self.storage.claims.claim(claim):
                log.warning("decision claim %s was left by a process that died before the decision landed; "
                            "taking it over", claim)
            refusals_before = len((snapshot.values.get("approval") or ApprovalRecord()).refusals)
            request = self.audit.latest_request(thread_id)
            request_id = request["id"] if request else None
            interface = interface or (request["interface"] if request else None)
            channel = request["channel"] if request else None
            with self._leased(thread_id, interface=interface, channel=channel, reply_to=reply_to,
                              request_id=request_id):
                failure = self._run_recorded(
                    Command(resume={pending.id: {"decision": decision, "user": user}}), thread_id, on_event,
                    request_id, interface=request["interface"] if request else interface, channel=channel)
                result = self._identified(failure or self.result(thread_id), request_id)
                if failure is not None:
                    if request_id is not None:
                        self._record_decision(request_id, thread_id, decision, user,
                                              interface or request["interface"], result)
                    return result
                if len(result.approval.refusals) > refusals_before:
                    result.notice = result.approval.refusals[-1]
                if request_id is not None:
                    self._record_decision(request_id, thread_id, decision, user,
                                          interface or request["interface"], result)
                    self.record_result(request_id, thread_id, result)
                return result

    # --- leases: every run holds one, with a heartbeat (agent.storage.runs) ------------------------------

    def answered(self, thread_id: str, key: str | None = None) -> None:
        """The front end posted the run's final message: the lease is finished. With ``key``, only if the lease
        is still that request's (a newer request in the thread may hold it by now)."""
        try:
            if key is not None and lease_key(self.runs.get(thread_id)) not in (key, None):
                return  # the thread's lease belongs to a newer request now (a click on this one's card, say)
            self.heartbeat.drop(thread_id)
            self.runs.finished(thread_id)
        except Exception:
            log.exception("could not mark the lease of %s finished", thread_id)

    def not_answered(self, thread_id: str) -> None:
        """The front end could not post the final message: stop beating, so a sweeper answers later."""
        self.heartbeat.drop(thread_id)

    def take_in(self, keys: list[str], thread_id: str, *, interface: str, channel: str | None,
                reply_to: dict[str, Any]) -> bool:
        """Claim every key (the first that was claimed before: False, and nothing else happens) and ``accept``
        the request, in one transaction, so no kill can leave a claim without the lease that makes sure the
        request is answered. The keys are intake claims (``Storage.intake_claims``: in the leases' database on
        SQLite too); claim them elsewhere only through ``claim_intake``."""
        claims = self.storage.intake_claims
        if self._claimed_before_intake_claims(keys):
            return False
        with self.runs.engine.begin() as db:
            if not all(claims.claim(key, db=db) for key in keys):
                return False  # the keys won so far stay claimed (their events were seen)
            self.runs.accept(thread_id, interface=interface, channel=channel, reply_to=reply_to, db=db)
        self.heartbeat.hold(thread_id)
        return True

    def claim_intake(self, keys: list[str]) -> bool:
        """Claim every key with the intake claims (where ``take_in`` claims), for a request answered without a
        run (a thread already waiting for approval): False when one was claimed before."""
        if self._claimed_before_intake_claims(keys):
            return False
        with self.runs.engine.begin() as db:
            return all(self.storage.intake_claims.claim(key, db=db) for key in keys)

    def _claimed_before_intake_claims(self, keys: list[str]) -> bool:
        """SQLite: an event claimed in the claims file by a version that claimed intake there (a Slack retry
        across the upgrade) is not taken in again."""
        legacy = self.storage.claims
        return legacy is not self.storage.intake_claims and any(legacy.claimed(key) for key in keys)

    def accept(self, thread_id: str, *, interface: str, channel: str | None, reply_to: dict[str, Any]) -> None:
        """A front end took a request in and will run it (``reply_to`` says what was asked and where to answer,
        with a ``key`` naming this request): from now on a process dying before it answers leaves a lease a
        sweeper picks up. Held (beaten) by this Agent until the run adopts it or ``not_answered``."""
        self.runs.accept(thread_id, interface=interface, channel=channel, reply_to=reply_to)
        self.heartbeat.hold(thread_id)

    def _not_superseded(self, thread_id: str, reply_to: dict[str, Any] | None) -> None:
        key = (reply_to or {}).get("key")
        if key is None:
            return
        row = self.runs.get(thread_id)
        if row is not None and lease_key(row) == key and row["status"] != ACCEPTED:
            raise Superseded(f"request {key} was picked up by another process")

    @contextmanager
    def _leased(self, thread_id: str, *, interface: str | None, channel: str | None,
                reply_to: dict[str, Any] | None, request_id: str | None = None) -> Iterator[None]:
        """Hold the thread's lease while the graph runs (the caller holds the thread lock). At the end it is
        ``answering`` when a front end posts the answer (``reply_to`` given, or recorded when it accepted the
        request), else finished. A ``BaseException`` (the process is stopping) only stops the heartbeat: the
        row stays for a sweeper, as after a kill."""
        before = self.runs.get(thread_id)
        key = (reply_to or {}).get("key") if reply_to is not None else (
            lease_key(before) if before is not None and before["status"] != FINISHED else None)
        self.runs.running(thread_id, request_id=request_id, interface=interface, channel=channel,
                          reply_to=reply_to)
        self.heartbeat.hold(thread_id)
        try:
            yield
        except Exception:
            self._run_ended(thread_id, key)
            raise
        except BaseException:
            self.heartbeat.drop(thread_id)
            raise
        self._run_ended(thread_id, key)

    def _run_ended(self, thread_id: str, key: str | None) -> None:
        """The graph stopped: ``answering`` when a front end will post the answer, else finished. A lease that
        another request in the thread took meanwhile (accepted while this one ran) is left to it."""
        try:
            row = self.runs.get(thread_id)
            if row is None:
                self.heartbeat.drop(thread_id)
                return
            if lease_key(row) != key:
                return
            if row.get("reply_to"):
                self.runs.answering(thread_id)
                return
            self.answered(thread_id)
        except Exception:
            log.exception("could not record the end of run %s in its lease", thread_id)

    # --- expiry: approvals nobody decided on in time ---------------------------------------------------------

    def overdue_approvals(self, *, limit: int = 200) -> list[str]:
        """The threads whose approval is still pending past its expiry (the audit's waiting requests, each
        confirmed against its checkpoint), oldest first. Expiring them is ``expire``'s.

        Only requests received at least ``approval.expiry_minutes`` ago can be due (a plan's expiry counts from
        when it was made, after the request arrived), so a sweep with nothing due reads no checkpoint. (Should
        the setting grow, requests planned under the shorter one are expired that much later.)"""
        due_before = self.context.now() - timedelta(minutes=self.config.approval.expiry_minutes)
        waiting = self.audit.history(status="waiting_approval", purges_only=False, until=due_before, limit=limit)
        overdue = []
        for entry in reversed(waiting):
            pending = self.result(entry.thread_id).pending
            if pending and self._expired(pending):
                overdue.append(entry.thread_id)
        return list(dict.fromkeys(overdue))

    def recently_expired(self, *, within: timedelta, limit: int = 200) -> list[tuple[str, str]]:
        """(thread, request) of the requests recorded as expired that were received within ``within``: the ones
        whose requester may still be owed the news (``agent.service.expiry`` tells each once)."""
        since = self.context.now() - within
        entries = self.audit.history(status="expired", purges_only=False, since=since, limit=limit)
        return [(entry.thread_id, entry.request_id) for entry in entries]

    def expire(self, thread_id: str) -> RunResult | None:
        """Decide the thread's pending approval as expired, through the graph's own path (the approval node sees
        the time has passed and ends the run: nothing is purged), and record it. None when there is nothing to
        expire (decided meanwhile, not yet due). The caller holds the thread's lock (``agent.service.expiry``
        takes it without waiting, so one replica does it)."""
        snapshot = self.snapshot(thread_id)
        pending = snapshot.interrupts[0] if snapshot.interrupts else None
        if pending is None or not self._expired(dict(pending.value)):
            return None
        request = self.audit.latest_request(thread_id)
        request_id = request["id"] if request else None
        interface = request["interface"] if request else None
        failure = self._run_recorded(Command(resume={pending.id: {"decision": "expire", "user": SYSTEM_USER}}),
                                     thread_id, None, request_id, interface=interface,
                                     channel=request["channel"] if request else None)
        result = failure or self.result(thread_id)
        if request_id is not None:
            self._record_decision(request_id, thread_id, "expire", SYSTEM_USER, interface or "cli", result)
            if failure is None:
                self.record_result(request_id, thread_id, result)
        return result

    def may_request_again(self, thread_id: str, user: str) -> str | None:
        """Why ``user`` may not send this thread's expired request back for approval, or None when they may."""
        requester = str(self.snapshot(thread_id).values.get("user") or "")
        return refuse_request_again(user, requester, self.context.user_groups(user), self.config)

    def request_again(self, thread_id: str, request_id: str, *, user: str, on_event: EventHandler | None = None,
                      interface: str | None = None, reply_to: dict[str, Any] | None = None) -> RunResult:
        """Send an expired request's plan, exactly as it was approved-for, back for a fresh approval (a new
        expiry), by its requester or an approver (``agent.policy.refuse_request_again``). The run goes on
        from the plan step of the stored run, so nothing is re-planned and the scope cannot change; the request
        stays its requester's (self-approval rules unchanged). Raises ``NothingPending`` when the request is
        not the thread's latest expired one (asked again already, or a newer request), ``NotAllowed`` on a
        refusal. ``reply_to``: as for ``ask`` (the front end posts the new card; the run's lease says so)."""
        with self._serialised(thread_id):
            snapshot = self.snapshot(thread_id)
            values = snapshot.values
            approval = values.get("approval") or ApprovalRecord()
            latest = self.audit.latest_request(thread_id)
            if snapshot.interrupts or snapshot.next or approval.status != "expired" or latest is None \
                    or latest["id"] != request_id:
                raise NothingPending("that request was already sent back for approval, or a newer request "
                                     "replaced it")
            requester = str(values.get("user") or "")
            refusal = refuse_request_again(user, requester, self.context.user_groups(user), self.config)
            if refusal:
                raise NotAllowed(refusal)
            now = self.context.now()
            plan: Plan = values["plan"]
            fresh = plan.model_copy(update={"created_at": now, "needs_approval": True,
                                            "expires_at": now + timedelta(minutes=self.config.approval.expiry_minutes)})
            new_id = self.audit.request_received(
                thread_id=thread_id, user=requester, interface=interface or latest["interface"],
                channel=latest["channel"], text=latest["text"], dry_run=False, at=now)
            self.audit.decision_made(request_id=new_id, thread_id=thread_id, user=user,
                                     interface=interface or latest["interface"], decision="request_again",
                                     status="asked_again", at=now)
            with self._leased(thread_id, interface=latest["interface"], channel=latest["channel"],
                              reply_to=reply_to, request_id=new_id):
                # as if the plan step had just made this plan: the graph's own edges take it to approval
                self.graph.update_state(self._config(thread_id), {
                    "plan": fresh, "approval": ApprovalRecord(status="pending"), "reply": "", "results": [],
                    "purge_outcomes": [], "repair": [], "deadline_at": None, "checks": []}, as_node="plan")
                failure = self._run_recorded(None, thread_id, on_event, new_id, interface=latest["interface"],
                                             channel=latest["channel"])
                if failure is not None:
                    return failure
                result = self.result(thread_id)
                self.record_result(new_id, thread_id, result)
                return result

    # --- offers: "Purge these N pages" / "Just check them" after a question --------------------------------

    def offer(self, thread_id: str) -> Offer | None:
        """The offer left open on a thread: its last request was a question about purging that planned pages,
        or a check that found pages not fresh everywhere (offered: purge those pages)."""
        snapshot = self.snapshot(thread_id)
        values = snapshot.values
        if not values.get("urls") or snapshot.next:
            return None
        offer_id = str(snapshot.config["configurable"].get("checkpoint_id") or "")
        if values.get("intent") == Intent.CHECK:
            urls = not_fresh_pages(values["urls"], values.get("checks") or [])
            return Offer(id=offer_id, urls=urls, pages=len(urls)) if urls else None
        if values.get("intent") != Intent.ASK:
            return None
        return Offer(id=offer_id, urls=list(values["urls"]),
                     pages=len((values.get("plan") or Plan()).pages or values["urls"]))

    def take_offer(self, thread_id: str, offer_id: str, choice: Literal["purge", "check"], *, user: str,
                   on_event: EventHandler | None = None, interface: str | None = None,
                   channel: str | None = None, reply_to: dict[str, Any] | None = None) -> RunResult:
        """Answer an offer by ``user``: a new request on the same thread for exactly the offer's URLs (from the
        stored run, never from the caller), under the same policy and approval rules as a typed request."""
        self._not_superseded(thread_id, reply_to)  # taken over and run already: its offer is gone, say nothing
        offer = self.offer(thread_id)
        if offer is None or offer.id != offer_id:
            raise NothingPending("that question was already answered, or a newer request replaced it")
        verb = "purge" if choice == "purge" else "check"
        message = f"{verb} " + " ".join(offer.urls)
        return self.ask(message, user=user, channel=channel, thread_id=thread_id, on_event=on_event,
                        interface=interface, chosen_intent=Intent(choice), reply_to=reply_to)

    # --- screening without a run --------------------------------------------------------------------------

    def screen(self, text: str) -> tuple[list[str], list[Rejection]]:
        """The URLs in ``text`` this agent would touch (allow-listed sites, safe, normalised) and the rest with
        why: what a front end may offer to purge (the message shortcut's modal). A run screens them again."""
        return screen_urls(text, self.config)

    # --- what a person has going on (Slack's App Home) ------------------------------------------------

    def history_answer(self, thread_id: str, who: Callable[[str], str], place: Callable[[str], str]) -> str:
        """The thread's history answer again, naming people and channels with ``who`` / ``place`` (Slack
        mentions): the same audit query and words as the reply the graph wrote."""
        return history_reply(self.snapshot(thread_id).values, self.context, who, place)

    def requests_of(self, user: str, *, limit: int = 10) -> list[HistoryEntry]:
        """``user``'s latest requests and their status, newest first (from the audit trail)."""
        return self.audit.history(user=user, purges_only=False, limit=limit)

    def waiting_for(self, user: str, *, limit: int = 20) -> list[RunResult]:
        """The runs waiting for a decision ``user`` may make, newest first: the audit's waiting requests, each
        confirmed against its checkpoint (still pending, not expired) and the approval policy (an approver, and
        not their own request unless self-approval is on). Deciding still goes through ``decide``."""
        groups = self.context.user_groups(user)
        waiting = []
        for entry in self.audit.history(status="waiting_approval", purges_only=False, limit=limit):
            pending = (result := self.result(entry.thread_id)).pending
            if not pending or self._expired(pending):
                continue
            if refuse_approver(user, str(pending.get("requester") or ""), groups, self.config, "approve") is None:
                waiting.append(result)
        return waiting

    def _expired(self, pending: dict[str, Any]) -> bool:
        expires = pending.get("expires_at")
        return bool(expires) and is_expired(datetime.fromisoformat(str(expires)), self.context.now())

    # --- reading state -------------------------------------------------------------------------------

    def result(self, thread_id: str, *, request_id: str | None = None) -> RunResult:
        """The thread's run as its last checkpoint shows it; with ``request_id``, identified as that request
        (its audit id and its console page, as a run answered without a restart is)."""
        snapshot = self.snapshot(thread_id)
        result = self._result_from(thread_id, snapshot.values, snapshot.interrupts[0] if snapshot.interrupts else None)
        return self._identified(result, request_id) if request_id else result

    def _result_from(self, thread_id: str, values: dict[str, Any], pending: Any = None) -> RunResult:
        plan: Plan = values.get("plan") or Plan()
        return RunResult(
            thread_id=thread_id,
            intent=Intent(values.get("intent") or Intent.UNKNOWN),
            reply=values.get("reply") or (waiting_reply(pending.value) if pending else ""),
            urls=values.get("urls", []),
            rejected=values.get("rejected", []),
            dropped_query=values.get("dropped_query", []),
            plan=plan.items,
            pages=plan.pages,
            # what a real run would need: a dry run or a question waits for nobody, but says the same
            needs_approval=plan.needs_approval or bool(plan.approval_reason),
            approval_reason=plan.approval_reason,
            approval=values.get("approval") or ApprovalRecord(),
            results=values.get("results", []),
            checks=values.get("checks", []),
            dry_run=bool(values.get("dry_run")),
            pending={"interrupt_id": pending.id, **pending.value} if pending else None,
            understood_by=values.get("understood_by") or "rules",
            token_usage=values.get("token_usage"),
        )

    def _identified(self, result: RunResult, request_id: str | None) -> RunResult:
        """The result with its audit id and, when the console's address is configured, its page there."""
        result.request_id = request_id
        result.web_url = self.config.web.request_url(request_id)
        return result

    def snapshot(self, thread_id: str) -> Any:
        """The thread's last checkpoint (LangGraph ``StateSnapshot``): values, what runs next, open interrupts."""
        return self.graph.get_state(self._config(thread_id))

    # --- audit ---------------------------------------------------------------------------------------

    def _run_recorded(self, graph_input: Any, thread_id: str, on_event: EventHandler | None,
                      request_id: str | None, *, interface: str | None = None,
                      channel: str | None = None) -> RunResult | None:
        """Run the graph; None when it ran to its end or to an approval. When it fails with an error, the audit
        row gets what was planned and sent before it and is marked "error", and the result for the user says
        what happened (never a traceback). A ``BaseException`` (the process is stopping) is recorded and raised."""
        recorder = ProgressRecorder(self, thread_id, request_id)
        try:
            self._run(graph_input, thread_id, on_event, request_id=request_id, interface=interface, channel=channel,
                      recorder=recorder)
            return None
        except Exception as exc:
            log.exception("run %s failed", thread_id)
            result = self._failed_result(thread_id, exc, recorder)
            self._record_failure(request_id, exc, result, recorder)
            return result
        except BaseException as exc:
            self._record_failure(request_id, exc, None, recorder)
            raise

    def _record_failure(self, request_id: str | None, exc: BaseException, result: RunResult | None,
                        recorder: ProgressRecorder) -> None:
        if request_id is None:
            return
        try:
            self.audit.request_failed(request_id, exc, at=self.context.now(), result=result,
                                      purge_outcomes=audit_rows(recorder.outcomes()))
        except Exception:  # the run's own error is the one to report
            log.exception("could not record the failure of request %s", request_id)

    def _failed_result(self, thread_id: str, exc: Exception, recorder: ProgressRecorder) -> RunResult:
        """The result of a run that stopped with an error: what it planned, what it sent (unverified), and a
        reply that says so. Built from the last checkpoint and what the recorder saw since."""
        try:
            result = self._result_from(thread_id, recorder.values())
        except Exception:  # the state itself cannot be read: say what we know
            log.exception("could not read the state of failed run %s", thread_id)
            result = RunResult(thread_id=thread_id, intent=Intent.UNKNOWN, reply="")
        outcomes = recorder.outcomes()
        if outcomes and result.plan and not result.results:  # results from a finished verify pass are kept
            why = "not verified: the run stopped with an error before checking"
            result.results = unverified_results(result.plan, outcomes, why, unanswered=(
                "no answer was recorded before the run stopped: this purge may or may not have been sent"))
        result.pending = None
        result.error = self.audit.redact(f"{type(exc).__name__}: {exc}")[:ERROR_TEXT_CHARS]
        result.reply = failure_reply(result, sent=bool(outcomes))
        return result

    def record_result(self, request_id: str, thread_id: str, result: RunResult) -> None:
        """Bring the request's audit row up to date with its result."""
        # the purges already happened: a failing audit write is logged, never turned into a failed request
        try:
            outcomes = self._values(thread_id).get("purge_outcomes") or []
            self.audit.request_updated(request_id, result, at=self.context.now(), purge_outcomes=audit_rows(outcomes))
        except Exception:
            log.exception("could not record the outcome of request %s in the audit trail", request_id)

    def _record_decision(self, request_id: str, thread_id: str, decision: str, user: str, interface: str,
                         result: RunResult) -> None:
        status = "refused" if result.notice else result.approval.status
        try:
            self.audit.decision_made(request_id=request_id, thread_id=thread_id, user=user, interface=interface,
                                     decision=decision, status=status, detail=result.notice or "",
                                     at=self.context.now())
        except Exception:
            log.exception("could not record the decision on request %s in the audit trail", request_id)

    # --- internals -----------------------------------------------------------------------------------

    def continue_run(self, thread_id: str, *, request_id: str | None, interface: str | None,
                     channel: str | None) -> RunResult:
        """Continue a run from its last checkpoint (crash recovery: the interrupted step runs again; purges are
        idempotent) and record its result. The caller holds the thread's lock (recovery takes it without
        waiting, so a live replica's run is never continued twice) and has taken its lease over; the lease ends
        ``answering`` when a front end answers (its ``reply_to``), else finished."""
        # the checkpoints this attempt writes say so, and when it began: `cachebot trace` shows both attempts
        attempt = int(self.snapshot(thread_id).metadata.get(ATTEMPT_KEY) or 1) + 1
        marks = {ATTEMPT_KEY: attempt, RESUMED_AT_KEY: datetime.now(timezone.utc).isoformat()}
        sent_before = self.context.sent_before[thread_id] = self._sent_before(thread_id, request_id)
        maybe = self._maybe_sent(thread_id, sent_before)
        if maybe is not None:
            self.context.maybe_sent[thread_id] = maybe
        self.context.taken_over.add(thread_id)
        try:
            with self._leased(thread_id, interface=interface, channel=channel, reply_to=None, request_id=request_id):
                self._run(None, thread_id, None, request_id=request_id, interface=interface, channel=channel,
                          marks=marks)
        finally:
            self.context.sent_before.pop(thread_id, None)
            self.context.maybe_sent.pop(thread_id, None)
            self.context.taken_over.discard(thread_id)
        result = self.result(thread_id, request_id=request_id)
        if request_id:
            self.record_result(request_id, thread_id, result)
        return result

    def _sent_before(self, thread_id: str, request_id: str | None) -> list[PurgeOutcome]:
        """The purges of the plan that the audit shows a layer took before the run stopped (``ProgressRecorder``
        writes each batch as it is answered): execute's first pass, run again, does not send them twice."""
        values = self._values(thread_id)
        plan: Plan = values.get("plan") or Plan()
        if not request_id or not plan.items or values.get("repair") or values.get("purge_outcomes"):
            return []
        taken = self.audit.answered_purges(request_id)
        why = "sent before cachebot restarted; not sent again"
        earlier: dict[tuple[str, str], PurgeOutcome] = {}
        for item in plan.items:
            status = taken.get((item.url, item.layer))
            if status is None or item.skip or (item.layer, item.target) in earlier:
                continue
            earlier[(item.layer, item.target)] = PurgeOutcome.answer(
                item.layer, item.operation, item.target,
                PurgeStatus.NOT_CACHED if status == "not_cached" else PurgeStatus.PURGED, why)
        return list(earlier.values())

    def _maybe_sent(self, thread_id: str, sent_before: list[PurgeOutcome]) -> tuple[str, set[tuple[str, str]]] | None:
        """The execute pass the run stopped in, and the (layer, target) its journal shows in flight
        (``agent.storage.in_flight``) without an answer in the audit: a layer may have taken them just before the
        kill. Execute looks at them before sending them again. None when the run is not in the middle of a pass."""
        values = self._values(thread_id)
        if values.get("repair"):
            run_pass = REPAIR  # a repair pass's answers are not in the audit until verified: all of its batches
        elif values.get("purge_outcomes") or not (values.get("plan") or Plan()).items:
            return None
        else:
            run_pass = FIRST
        answered = {(o.layer, o.target) for o in sent_before}
        noted = {(batch.layer, target) for batch in self.purges_in_flight.of(thread_id, run_pass)
                 for target in batch.targets}
        maybe = noted - answered
        if maybe:
            log.info("run %s had %d purges in flight when it stopped: looking before sending them again",
                     thread_id, len(maybe))
        return (run_pass, maybe) if maybe else None

    def _run(self, graph_input: Any, thread_id: str, on_event: EventHandler | None, *,
             request_id: str | None = None, interface: str | None = None, channel: str | None = None,
             recorder: ProgressRecorder | None = None, marks: dict[str, Any] | None = None) -> None:
        """Stream the graph on an event loop of its own: the nodes of one request (execute and verify among them)
        share it, while front ends keep calling synchronously (Slack handlers run in threads). ``marks`` go into
        the metadata of every checkpoint this run writes, with the request id (what `cachebot trace` reads).

        Whatever a node does, the run stops at ``run_budget`` (``DeadlinePassed``): the nodes keep their own
        steps within ``limits.deadline_seconds``; this catches what none of them bounds (a layer that hangs
        while being closed, say), so the request still ends with what was and was not purged."""
        budget = self.run_budget()
        marks = {**({REQUEST_ID_KEY: request_id} if request_id else {}), **(marks or {})}

        async def bounded() -> None:
            try:
                async with asyncio.timeout(budget):
                    await self._arun(graph_input, thread_id, on_event, request_id=request_id, interface=interface,
                                     channel=channel, recorder=recorder, marks=marks)
            except TimeoutError as exc:
                raise DeadlinePassed(f"it went past its deadline ({budget:g} s) and was stopped") from exc

        asyncio.run(bounded())

    def run_budget(self) -> float:
        """How long one run of the graph may take at most: twice ``limits.deadline_seconds`` (purges and their
        verification keep within one), plus the model's time to understand when one is configured."""
        budget = 2 * self.config.limits.deadline_seconds
        if self.config.llm is not None:
            budget += self.config.llm.timeout_seconds * (self.config.llm.max_retries + 1)
        return budget

    async def _arun(self, graph_input: Any, thread_id: str, on_event: EventHandler | None, *,
                    request_id: str | None = None, interface: str | None = None, channel: str | None = None,
                    recorder: ProgressRecorder | None = None, marks: dict[str, Any] | None = None) -> None:
        """Stream the graph. The caller holds the thread's lease (``cachebot_runs``); from the moment the graph
        says its next step is ``execute`` (a checkpoint's ``next``) until the purges are sent it is marked
        ``executing``. ``graph_input=None`` continues from the last checkpoint."""
        executing = False
        if graph_input is not None:  # a new request, or a decision: nothing of the thread's is in flight now
            self._forget_in_flight(thread_id)
        recorder = recorder or ProgressRecorder(self, thread_id, request_id)
        reader = EventReader()
        # OpenTelemetry, when OTEL_EXPORTER_OTLP_ENDPOINT is set: a span per node and per purge batch
        spans = run_spans(request_id, thread_id, "recovery" if graph_input is None else
                          "decision" if isinstance(graph_input, Command) else "request")

        def handle(mode: str, chunk: Any) -> None:
            nonlocal executing
            recorder.saw(mode, chunk)
            if spans is not None:
                spans.saw(mode, chunk)
            for event in reader.events(mode, chunk):
                if isinstance(event, Executing) and not executing:
                    # the stream is paused here: execute has not started yet
                    self.runs.executing(thread_id, request_id=request_id, interface=interface, channel=channel)
                    executing = True
                if on_event is not None:
                    on_event(event)

        try:
            await self._stream(graph_input, thread_id, handle, marks)
        except BaseException as exc:
            if spans is not None:
                spans.close(exc)
            raise
        if spans is not None:
            spans.close()
        self._forget_in_flight(thread_id)  # the run's steps are all checkpointed: no pass is half sent
        if executing:  # purges are sent: the lease goes on (verify, report, the answer) as running
            self.runs.running(thread_id, request_id=request_id, interface=interface, channel=channel)

    def _forget_in_flight(self, thread_id: str) -> None:
        try:
            self.purges_in_flight.forget(thread_id)
        except Exception:  # leftovers only make a later takeover look before sending: never worth failing a run
            log.exception("could not clear the purges in flight of %s", thread_id)

    async def _stream(self, graph_input: Any, thread_id: str, handle: Callable[[str, Any], None],
                      marks: dict[str, Any] | None = None) -> None:
        """Run the graph through an async saver of its own (on the sync saver's tables), giving ``handle`` each
        chunk (mode, chunk) of its stream. The graph waits until a chunk is handled: a step's nodes start only
        after the checkpoint announcing them was (``astream`` yields it before it schedules them). Chunks are
        handled off the loop, so the purges of a running step go on while the audit is written and front ends
        are told (a slow Slack call never eats into a layer's timeout)."""
        async with self.storage.async_checkpointer() as saver:
            stream = self.graph.copy(update={"checkpointer": saver}).astream(
                graph_input,
                {**self._config(thread_id), "metadata": marks or {}},  # savers copy these into each checkpoint
                context=self.context,
                stream_mode=["custom", "updates", "checkpoints"],
                durability="sync",  # a crash must not lose the record that a purge was sent
            )
            step = StepInFlight()
            async with aclosing(stream):  # closed before its saver is
                async for mode, chunk in stream:
                    step.saw(mode, chunk)
                    try:
                        await asyncio.to_thread(handle, mode, chunk)
                    except BaseException:
                        await step.finish(stream)
                        raise

    def _values(self, thread_id: str) -> dict[str, Any]:
        return self.graph.get_state(self._config(thread_id)).values

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    @contextmanager
    def _serialised(self, thread_id: str):
        """LangGraph has no per-thread lock: two resumes of one thread would both run and fork its history.
        This lock holds across threads, processes and replicas (``agent.storage.locks.ThreadLocks``)."""
        with self.locks.hold(thread_id):
            yield


class StepInFlight:
    """The step the graph is running, as its stream tells it: a checkpoint names the step's nodes before any of
    them starts; each node's update says it finished."""

    def __init__(self) -> None:
        self.unfinished: set[str] = set()
        self.started = False

    def saw(self, mode: str, chunk: Any) -> None:
        if mode == "checkpoints" and isinstance(chunk, dict):
            self.unfinished, self.started = set(chunk.get("next") or ()), False
            return
        self.started = True  # the stream went on after the checkpoint: its nodes are running
        if mode == "updates" and isinstance(chunk, dict):
            self.unfinished -= set(chunk)

    async def finish(self, stream: AsyncIterator[Any]) -> None:
        """When handling a chunk failed: nodes already running finish (a purge pass is never cut in half; their
        results are saved for the step), and the graph stops before its next step. A step announced but not
        started never starts."""
        while self.started and self.unfinished:
            try:
                mode, chunk = await anext(stream)
            except StopAsyncIteration:
                return
            self.saw(mode, chunk)


class ProgressRecorder:
    """Writes a run into the audit trail while it goes: the plan as soon as it is made, each batch of purge
    answers as soon as its layer gives it (``sent`` in execute's progress events), verification results when they
    come. Until the run ends the row stays "received"; purges not yet verified are "purged, NOT verified". A
    failing audit write is logged and never stops the purges."""

    def __init__(self, agent: Agent, thread_id: str, request_id: str | None):
        self.agent = agent
        self.thread_id = thread_id
        self.request_id = request_id
        self._values: dict[str, Any] | None = None
        self._sent: dict[tuple[str, str], PurgeOutcome] = {}
        self._verified = False

    def values(self) -> dict[str, Any]:
        """The run's state as far as we know it: the last checkpoint, then every update seen since."""
        if self._values is None:
            self._values = dict(self.agent._values(self.thread_id))
        return self._values

    def outcomes(self) -> list[PurgeOutcome]:
        """Every purge answer so far: execute's full list once it finished, else the batches reported."""
        try:
            known = self.values().get("purge_outcomes") or []
        except Exception:
            known = []
        merged = {(o.layer, o.target): o for o in known}
        if not self._verified:  # a repair pass's batches would otherwise hide the verified first pass
            merged.update(self._sent)
        return list(merged.values())

    def saw(self, mode: str, chunk: Any) -> None:
        try:
            if mode == "custom" and isinstance(chunk, dict) and chunk.get("sent") and not self._verified:
                self._sent.update({(o.layer, o.target): o for o in chunk["sent"]})
                self._write()
            elif mode == "updates" and isinstance(chunk, dict):
                for node, update in chunk.items():
                    if node == "__interrupt__" or not isinstance(update, dict):
                        continue
                    self.values().update(update)
                    self._verified = self._verified or node == "verify"
                    if node in ("execute", "verify") or (node == "plan" and update.get("plan", Plan()).items):
                        self._write()
        except Exception:
            log.exception("could not record the progress of run %s in the audit trail", self.thread_id)

    def _write(self) -> None:
        if self.request_id is None:
            return
        result = self.agent._result_from(self.thread_id, self.values())
        outcomes = self.outcomes()
        if not result.results and outcomes:
            result.results = unverified_results(result.plan, outcomes, "not verified yet")
        self.agent.audit.request_updated(self.request_id, result, at=self.agent.context.now(),
                                         purge_outcomes=audit_rows(outcomes), in_progress=True)


def lease_key(row: dict[str, Any] | None) -> str | None:
    """The key a front end gave the request holding a lease (None: a lease without one, the terminal's)."""
    return ((row or {}).get("reply_to") or {}).get("key")


def audit_rows(outcomes: list[PurgeOutcome]) -> list[dict[str, Any]]:
    """The audit store takes the purge answers as plain rows."""
    return [outcome.model_dump(mode="json") for outcome in outcomes]


def nothing_pending_reason(values: dict[str, Any]) -> str:
    """Why a decision found nothing to decide: already decided, expired, or never asked."""
    approval = values.get("approval") or ApprovalRecord()
    status = approval.status
    if status in ("approved", "denied"):
        return f"this request was already {status} by {approval.by}"
    if status == "expired":
        return "this approval request expired"
    return "there is no approval waiting on that request"
