"""The work behind the Slack listeners: intake (filters, exactly-once claims, the first reply) and runs (the
agent with live progress, then its answer rendered with ``blocks.py``).

``Handlers.handle`` takes one typed job (``slack_app/jobs.py``); an intake job returns the run it asks for, which
``dispatch.py`` starts on the runs pool (threads here, or a worker process that builds its own ``Handlers``).

Exactly once
    Slack retries (``X-Slack-Retry-Num``) and redelivers (same ``event_id``); a channel mention arrives both as
    ``app_mention`` and as ``message``; people double-click; two app instances may share the files. Every
    run starts only after winning a claim in ``agent.storage.claims`` (``event:<event_id>``, then
    ``message:<channel>:<ts>``), and every decision only after winning ``decision:<thread>:<interrupt>``.

Trust
    Who clicked comes from the signed payload's ``user.id``; the button value only names the run and the
    interrupt, and ``Agent.decide`` checks both against the checkpoint (and the graph checks the approver).
    Whether a plan needs approval, who may approve, expiry: all decided in ``agent/``.
    An offer's buttons ("Purge these N pages" / "Just check them", after a question about purging) name the run
    and the offer; the URLs come from the stored run (``Agent.take_offer``), so a tampered value cannot widen
    what is purged, and the click must come from the conversation the question was asked in.
    Every user-supplied string reaches Slack through ``blocks.neutralise`` (mrkdwn-safe, verbatim).
    ``/cachebot`` is claimed per ``trigger_id``; the clear-links modal per view id, and its checkboxes only
    pick from the links it was opened with (its ``private_metadata``), which the run screens again.
    Approve/Deny count on the card in the thread, on a copy recorded in ``agent.storage.copies`` (approvers'
    channel, DMs: ``agent.policy.approval_recipients``) and on the clicker's Home tab; wherever the click comes
    from it is the same claim, the same interrupt check and the same policy in the graph.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from slack_sdk import WebClient

from agent.models import Intent, RunResult
from agent.policy import approval_recipients
from agent.service import expiry, recovery
from agent.service.agent import Agent, NotAllowed, NothingPending, Superseded
from agent.service.events import ApprovalDecided, PlanReady, ProgressEvent
from agent.storage.claims import ClaimStore
from agent.urls import extract_candidates
from agent.words import (
    asked_again_notice,
    clock_time,
    denied_line,
    expired_card_line,
    expired_notice,
    taken_over_waiting,
)
from slack_app import blocks as kit
from slack_app.jobs import (
    AnswerPrivately,
    AnswerRequest,
    ApplyDecision,
    ApprovalClick,
    AssistantThreadStarted,
    HomeOpened,
    Job,
    MessageShortcut,
    ModalSubmitted,
    NewEvent,
    OfferClick,
    RecoverRuns,
    RequestAgain,
    RequestAgainClick,
    RunJob,
    SlashCommand,
    TakeOffer,
)
from slack_app.progress import ProgressMessage, ThreadStatus
from slack_app.slack_api import SlackApi, approver_mentions

log = logging.getLogger("cachebot.slack")

MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
IN_CHANNEL_VERBS = ("purge", "history")  # /cachebot verbs answered in a thread in the channel
PRIVATE_VERBS = ("check",)  # … answered to the asker only
HOME = "home"  # ApplyDecision.clicked_in for a click on the Home tab


class Handlers:
    """Intake and runs for one ``Agent``, talking to Slack through ``SlackApi``."""

    def __init__(self, agent: Agent, client: WebClient, *, claims: ClaimStore | None = None,
                 progress_interval: float = 1.0):
        self.agent = agent
        self.client = client
        # the Agent's storage decided where claims live (the same database / files as its checkpoints)
        self.claims = claims or agent.storage.claims
        self.progress_interval = progress_interval
        self.slack = SlackApi(client, keep=approver_mentions(agent.config.approval))

    def handle(self, job: Job) -> RunJob | None:
        """Do one job. An intake job returns the run to start (None: nothing to run); a run returns None."""
        match job:
            case NewEvent():
                return self.accept(job)
            case ApprovalClick():
                return self.click(job)
            case OfferClick():
                return self.offer_click(job)
            case RequestAgainClick():
                return self.again_click(job)
            case SlashCommand():
                return self.command(job)
            case MessageShortcut():
                self.open_clear_links(job)
            case ModalSubmitted():
                return self.clear_links(job)
            case HomeOpened():
                self.show_home(job)
            case AssistantThreadStarted():
                self.greet_assistant_thread(job)
            case AnswerRequest():
                self.run_request(job)
            case AnswerPrivately():
                self.answer_privately(job)
            case ApplyDecision():
                self.decide(job)
            case TakeOffer():
                self.take_offer(job)
            case RequestAgain():
                self.request_again(job)
            case RecoverRuns():
                self.recover(resume=job.resume)
            case _:
                raise TypeError(f"not a Slack job: {job!r}")
        return None

    # --- crash recovery ----------------------------------------------------------------------------------

    def recover(self, *, resume: bool = True) -> list[recovery.Recovered]:
        """Finish (or report as interrupted) the runs a dead process left executing, telling their threads.
        Pending approvals stay pending. Run on start (``slack_app/server.py``); safe on every replica."""
        return recovery.recover(self.agent, resume=resume, notify=self.tell_recovered)

    def tell_recovered(self, item: recovery.Recovered) -> None:
        """A request picked up again by this process (``agent.service.recovery``): its thread is told so once,
        in place of its "Looking at…" message when there is one, then gets the answer it was owed: the report,
        the approval card that may never have been posted, or what was and was not purged."""
        asked = item.reply_to or {}
        channel, thread_ts = asked.get("channel"), asked.get("thread_ts")
        if not channel or not thread_ts:  # a lease from before front ends recorded where to answer
            channel, _, thread_ts = item.thread_id.partition(":")
        if item.interface != "slack" or not channel or not thread_ts:
            return
        key = asked.get("key")
        if key and self.slack.finished_in_thread(channel, thread_ts, key):
            # the process died after posting the final message, before its lease said so: it is out already
            log.info("request %s in %s was answered before its process stopped; not answering again",
                     key, item.thread_id)
            return
        status_ts = asked.get("status_ts")
        if item.outcome == "interrupted" or item.result is None:
            self.slack.reply_in_place(channel, thread_ts, status_ts, recovery.interrupted_message(item),
                                      kit.finished_metadata(key, item.thread_id, "stopped"))
            return
        result = item.result
        if item.outcome == "waiting_approval" and asked.get("kind") == "decision":
            # the click never landed: the card still has its buttons, a new click works (Agent.decide)
            self.slack.post(channel, thread_ts, taken_over_waiting(asked.get("clicker"), kit.mention))
            return
        if asked.get("kind") == "decision" and result.approval.status in ("approved", "denied", "expired"):
            # the card and its copies may still show their buttons: the process stopped before updating them
            record = result.approval
            self._update_every_copy(item.thread_id, f"Request {record.status}", kit.decided_blocks(
                result, record.status, record.by, record.at))
        if item.first_time:
            notice = taken_over_waiting(None) if result.pending else recovery.finished_message(item)
            self.slack.reply_in_place(channel, thread_ts, status_ts, notice)
            status_ts = None
        if result.pending:
            self.slack.show(channel, thread_ts, status_ts, result.reply, kit.approval_blocks(result))
            self._tell_approvers(result, channel, status_ts)
            return
        self._finish(result, channel, thread_ts, status_ts, key)

    # --- expiry: approvals nobody decided on in time -------------------------------------------------------

    def expire(self) -> int:
        """Expire every overdue approval and tell each once (``agent.service.expiry``); the periodic job's work.
        Returns how many this call expired."""
        return expiry.expire_overdue(self.agent, self.tell_expired)

    def tell_expired(self, item: expiry.Expired) -> None:
        """An approval expired undecided: the card and every copy say so, with Request again in place of
        Approve / Deny; the requester is told in the thread; approvers' Home tabs drop it. Raises when the thread
        could not be told (``expiry`` then tells it again later)."""
        channel, _, thread_ts = item.thread_id.partition(":")
        if item.interface != "slack" or not channel or not thread_ts:
            return
        self._update_every_copy(item.thread_id, expired_card_line(item.expires_at),
                                kit.expired_blocks(item.result, item.expires_at, item.request_id))
        notice = kit.naming_people(lambda who, _: expired_notice(item.requester, item.expires_at, who))
        final = kit.finished_metadata(f"expiry:{item.thread_id}:{item.request_id}", item.thread_id, "expired")
        if self.slack.post(channel, thread_ts, expired_notice(item.requester, item.expires_at), notice,
                           final) is None:
            raise NotTold(f"could not post the expiry of {item.thread_id} in its thread")
        self._refresh_approvers_homes()

    def _refresh_approvers_homes(self) -> None:
        """Publish each configured approver's Home tab again, so a request that stopped waiting leaves it."""
        for user in self.agent.config.approval.approvers:
            if kit.SLACK_USER_ID.fullmatch(user):
                self.show_home(HomeOpened(user, "home"))

    def again_click(self, job: RequestAgainClick) -> RequestAgain | None:
        """Request again on an expired card (or a copy): checked against where it was clicked and against policy
        (the requester or an approver: ``Agent.may_request_again``), then claimed (one fresh approval)."""
        clicker, channel, message_ts = _clicked(job.body)
        named = self._button_value(job.action, channel, clicker, "run", "request")
        if named is None:
            return None
        thread_id, request_id = named
        run_channel, _, thread_ts = thread_id.partition(":")
        is_copy = self.copies.is_copy(thread_id, channel, message_ts)
        in_thread = run_channel == channel and (_clicked_thread(job.body) == thread_ts or is_copy)
        if not clicker or not thread_ts or not (in_thread or is_copy):
            self.slack.ephemeral(channel, clicker, None,
                                 "That button does not belong to this conversation; nothing was done.")
            return None
        where = thread_ts if in_thread else None
        refusal = self.agent.may_request_again(thread_id, clicker)
        if refusal:
            self.slack.ephemeral(channel, clicker, where, f"You cannot ask again: {kit.neutralise(refusal)}.")
            return None
        key = f"again:{thread_id}:{request_id}"
        if not self.claims.claim(key):
            self.slack.ephemeral(channel, clicker, where, "Nothing to do: this request was already sent back "
                                                          "for approval.")
            return None
        return RequestAgain(run_channel, thread_ts, thread_id, request_id, clicker, channel, key)

    def request_again(self, job: RequestAgain) -> None:
        """The same plan back for a fresh approval: every copy gets fresh Approve / Deny, the thread says who
        asked again and until when, approvers' Home tabs show it again. The run holds a lease (``reply_to``)
        until that is posted, so a process dying meanwhile leaves the new card to a sweeper."""
        channel, thread_ts, thread_id = job.channel, job.thread_ts, job.thread_id

        def tell_clicker(text: str) -> None:
            self.slack.ephemeral(job.clicked_in, job.clicker, thread_ts if job.clicked_in == channel else None, text)

        reply_to = {"key": job.claim, "kind": "again", "channel": channel, "thread_ts": thread_ts,
                    "clicker": job.clicker}
        try:
            result = self.agent.request_again(thread_id, job.request_id, user=job.clicker, interface="slack",
                                              reply_to=reply_to)
        except NotAllowed as exc:
            self.claims.release(job.claim)  # a refusal is not an answer: someone allowed may still press it
            tell_clicker(f"You cannot ask again: {kit.neutralise(exc)}.")
            return
        except NothingPending as exc:
            tell_clicker(f"Nothing to do: {kit.neutralise(exc)}.")
            return
        except Exception:
            log.exception("asking again on %s failed", thread_id)
            self.claims.release(job.claim)
            tell_clicker("Something went wrong on my side; please try again.")
            self._answered(thread_id, job.claim)
            return
        with self._answering(thread_id, job.claim):
            if not result.pending:  # the run stopped with an error before asking: say so, as any run would
                self._finish(result, channel, thread_ts, None, job.claim)
                return
            self._update_every_copy(thread_id, result.reply, kit.approval_blocks(result))
            pending = result.pending
            said = asked_again_notice(job.clicker, str(pending.get("approvers") or ""), pending.get("expires_at"),
                                      who=kit.mention)
            self.slack.post(channel, thread_ts, asked_again_notice(job.clicker, "the approvers",
                                                                   pending.get("expires_at")), [kit.section(said)])
            self._refresh_approvers_homes()

    # --- events: a new request ----------------------------------------------------------------------------

    def accept(self, job: NewEvent) -> AnswerRequest | None:
        """A message event: a new request, unless it is not one, not for us, or already taken."""
        event, bot_user_id = job.event, job.bot_user_id
        if event.get("bot_id") or event.get("subtype") or not event.get("user") or event.get("user") == bot_user_id:
            return  # bots (ourselves included), edits, deletions, joins: not requests
        channel, ts, text = event.get("channel"), event.get("ts"), event.get("text") or ""
        if not channel or not ts:
            return
        event_id = job.event_id or f"{channel}:{ts}:{event.get('type')}"
        key = f"event:{event_id}"
        thread_ts = event.get("thread_ts") or ts
        thread_id = f"{channel}:{thread_ts}"
        if event.get("type") == "message" and event.get("channel_type") != "im":
            # channel chatter is not for us, except replies in a thread where we are already talking
            if not event.get("thread_ts") or not self._known_thread(thread_id):
                return
        # the event, and the message (it also comes in as the other event type: app_mention + message)
        keys = [key, f"message:{channel}:{ts}"]
        message = MENTION.sub(lambda m: "" if m.group(1) == bot_user_id else m.group(0), text).strip()
        pending = self.agent.result(thread_id).pending
        if pending:
            if self.agent.claim_intake(keys):
                self.slack.post(channel, thread_ts, "A request in this thread is waiting for approval. Approve or "
                                                    "deny it first, or start a new thread for a new request.")
            return
        assistant = bool(event.get("channel_type") == "im" and event.get("thread_ts")
                         and self.claims.claimed(_assistant_key(channel, thread_ts)))
        taken = self._taken_in(AnswerRequest(channel, thread_ts, thread_id, event["user"], message, None,
                                             assistant=assistant, key=key), _url_count(message), claim=keys)
        if taken is None:
            log.info("event %s already handled (retry %s)", event_id, job.retry_num)
        return taken

    def _known_thread(self, thread_id: str) -> bool:
        result = self.agent.result(thread_id)
        return bool(result.reply or result.pending)

    def _taken_in(self, job: AnswerRequest, urls: int, *, claim: list[str] | None = None) -> AnswerRequest | None:
        """The request is ours: its lease records what was asked before anything is said, so a process dying
        from here on leaves it for another to run and answer (``Agent.accept``); then "Looking at…". ``claim``:
        keys to win first, together with the lease (``Agent.take_in``: one transaction on PostgreSQL, so no kill
        leaves a claimed event without a lease); None when one was already claimed."""
        asked = {"key": job.key, "kind": "answer", "channel": job.channel, "thread_ts": job.thread_ts,
                 "user": job.user, "message": job.message, "intent": job.intent}
        if claim is None:
            self.agent.accept(job.thread_id, interface="slack", channel=job.channel, reply_to=asked)
        elif self.claims is self.agent.storage.claims:  # (intake claims: with the lease, Agent.take_in)
            if not self.agent.take_in(claim, job.thread_id, interface="slack", channel=job.channel, reply_to=asked):
                return None
        elif all(self.claims.claim(key) for key in claim):
            self.agent.accept(job.thread_id, interface="slack", channel=job.channel, reply_to=asked)
        else:
            return None
        status_ts = self.slack.post(job.channel, job.thread_ts, kit.looking_at(urls))
        if status_ts:
            self.agent.accept(job.thread_id, interface="slack", channel=job.channel,
                              reply_to={**asked, "status_ts": status_ts})
        return replace(job, status_ts=status_ts)

    @staticmethod
    def _reply_to(job: AnswerRequest | TakeOffer) -> dict[str, Any]:
        return {"key": job.key, "kind": "answer", "channel": job.channel, "thread_ts": job.thread_ts,
                "status_ts": job.status_ts}

    def run_request(self, job: AnswerRequest) -> None:
        status = ThreadStatus(self.slack, job.channel, job.thread_ts, interval=self.progress_interval) \
            if job.assistant else None
        if status is not None:
            status.start()
        try:
            self._run_and_answer(job.channel, job.thread_ts, job.thread_id, job.status_ts,
                                 lambda on_event: self.agent.ask(job.message, user=job.user, channel=job.channel,
                                                                 thread_id=job.thread_id, interface="slack",
                                                                 on_event=on_event,
                                                                 chosen_intent=_intent(job.intent),
                                                                 reply_to=self._reply_to(job) if job.key else None),
                                 also=status.event if status is not None else None, key=job.key)
        finally:
            if status is not None:
                status.clear()

    def greet_assistant_thread(self, job: AssistantThreadStarted) -> None:
        """A new assistant thread: suggested prompts, once (the claim also marks the thread as an assistant
        thread, so its requests show their progress in its status line)."""
        if not job.channel or not job.thread_ts or not self.claims.claim(_assistant_key(job.channel, job.thread_ts)):
            return
        self.slack.suggest_prompts(job.channel, job.thread_ts, kit.ASSISTANT_PROMPTS_TITLE, kit.ASSISTANT_PROMPTS)

    def _run_and_answer(self, channel: str, thread_ts: str, thread_id: str, status_ts: str | None,
                        run: Callable[[Callable[[ProgressEvent], None]], RunResult],
                        also: Callable[[ProgressEvent], None] | None = None, key: str | None = None) -> None:
        """Run one request with live progress (the plan replaces the status message as soon as it is known),
        then post its answer: the approval request, the report, or the reply. ``also`` hears every event too
        (an assistant thread's status line). ``key``: the request's lease (``_taken_in``), finished once the
        answer is out; a request another process picked up meanwhile is left to it."""
        progress = ProgressMessage(self.client, channel, thread_ts, interval=self.progress_interval)

        def on_event(event: ProgressEvent) -> None:
            progress.event(event)
            if also is not None:
                also(event)
            if isinstance(event, PlanReady) and event.plan.items and not event.plan.needs_approval and status_ts:
                self.slack.update(channel, status_ts, "The plan",
                                  kit.plan_blocks(event.plan.items, event.plan.pages, event.rejected))

        try:
            result = run(on_event)
        except Superseded:
            log.info("request %s in %s was picked up by another process meanwhile", key, thread_id)
            return
        except NothingPending as exc:  # an offer that was taken or replaced meanwhile
            self.slack.reply_in_place(channel, thread_ts, status_ts, f"Nothing to do: {exc}.",
                                      kit.finished_metadata(key, thread_id, "answer"))
            self._answered(thread_id, key)
            return
        except Exception:
            log.exception("run %s failed", thread_id)
            self.slack.reply_in_place(channel, thread_ts, status_ts, "Something went wrong on my side; nothing "
                                      "more will happen for this request. Please try again.",
                                      kit.finished_metadata(key, thread_id, "failed"))
            self._answered(thread_id, key)
            return
        # the answer first: the progress message's last edit may have to wait out its rate limit (up to a second,
        # longer than a one-URL run takes), and nobody should wait for the report because of it
        try:
            with self._answering(thread_id, key):
                if result.pending:
                    self.slack.update(channel, status_ts, result.reply, kit.approval_blocks(result))
                    self._tell_approvers(result, channel, status_ts)
                else:
                    self._finish(result, channel, thread_ts, status_ts, key)
        finally:
            progress.finish()

    def _answered(self, thread_id: str, key: str | None) -> None:
        if key is not None:
            self.agent.answered(thread_id, key)

    @contextmanager
    def _answering(self, thread_id: str, key: str | None) -> Iterator[None]:
        """Posting a run's final message: its lease is finished when it is out, and left for a sweeper to
        answer again when posting failed with an error."""
        try:
            yield
        except BaseException:
            if key is not None:
                self.agent.not_answered(thread_id)
            raise
        self._answered(thread_id, key)

    def _finish(self, result: RunResult, channel: str, thread_ts: str, status_ts: str | None,
                key: str | None = None) -> None:
        """After a run: the report (with a CSV when it is big), or the plain answer in place of "Looking at…".
        ``key``: the request's lease key; the final message carries it in its metadata (``kit.finished_metadata``)
        so a process taking the run over after a kill sees the answer is out (``tell_recovered``)."""
        thread_id = result.thread_id or f"{channel}:{thread_ts}"

        def final(outcome: str) -> dict[str, Any] | None:
            return kit.finished_metadata(key, thread_id, outcome)

        if result.error and result.results:  # stopped after sending (agent.service.agent): say so, then what was sent
            self.slack.post(channel, thread_ts, result.reply.split("\n", 1)[0],
                            metadata=kit.notice_metadata(key, thread_id))
            self._post_report(result, channel, thread_ts, final("report"))
        elif result.results:
            self._post_report(result, channel, thread_ts, final("report"))
        elif result.plan and result.intent == Intent.ASK:
            offer = self.agent.offer(result.thread_id)
            blocks = kit.offer_blocks(result, offer.id) if offer else kit.dry_run_blocks(result)
            self.slack.show(channel, thread_ts, status_ts, result.reply, blocks, final("answer"))
        elif result.intent == Intent.CHECK and (offer := self.agent.offer(result.thread_id)):
            blocks = kit.check_offer_blocks(result, offer.id, offer.pages, self.slack.keep)
            self.slack.show(channel, thread_ts, status_ts, result.reply, blocks, final("answer"))
        elif result.plan and result.dry_run:
            self.slack.show(channel, thread_ts, status_ts, result.reply, kit.dry_run_blocks(result), final("answer"))
        elif result.plan and result.intent in (Intent.PURGE, Intent.PURGE_ALL):
            # denied, expired: the plan message stays; the approver named as Slack shows people
            status = result.approval.status
            blocks = kit.naming_people(lambda who, _: denied_line(result.approval.by, who)) \
                if status == "denied" else None
            outcome = status if status in ("denied", "expired") else "failed" if result.error else "answer"
            self.slack.post(channel, thread_ts, result.reply, blocks, final(outcome))
        elif result.intent == Intent.HISTORY and self.agent.audit is not None:
            blocks = kit.naming_people(lambda who, place: self.agent.history_answer(result.thread_id, who, place))
            self.slack.show(channel, thread_ts, status_ts, result.reply, blocks, final("answer"))
        else:
            self.slack.reply_in_place(channel, thread_ts, status_ts, result.reply,
                                      final("failed" if result.error else "answer"))

    def _post_report(self, result: RunResult, channel: str, thread_ts: str,
                     metadata: dict[str, Any] | None = None) -> None:
        """The report; a CSV of it when it is big (after the report: a process killed in between leaves the
        report without its file, and whoever takes over sees the report is out and does not post it again)."""
        blocks, text, csv_text = kit.report_blocks(result)
        self.slack.post(channel, thread_ts, text, blocks, metadata)
        if csv_text is None:
            return
        error = self.slack.upload_csv(channel, thread_ts, csv_text, filename=f"cachebot-report-{thread_ts}.csv",
                                      title="cachebot report (every page on every layer)",
                                      comment="The full report, failures first.")
        if error:
            self.slack.post(channel, thread_ts, f"I could not attach the full report as a CSV file ({error}).")

    # --- actions: approve / deny --------------------------------------------------------------------------

    def click(self, job: ApprovalClick) -> ApplyDecision | None:
        """Approve or Deny, on the card in the run's thread, on one of its copies (approvers' channel, DMs) or on
        the clicker's Home tab: checked against where it was clicked, then claimed (one decision per interrupt)."""
        clicker, channel, message_ts = _clicked(job.body)
        decision = "approve" if job.action.get("action_id") == kit.APPROVE_ACTION else "deny"
        named = self._button_value(job.action, channel, clicker, "run", "interrupt")
        if named is None:
            return
        thread_id, interrupt_id = named
        run_channel, _, thread_ts = thread_id.partition(":")
        on_home = _on_home(job.body)
        # the card clicked must be this run's: in its thread, or a recorded copy (a value copied onto another
        # card must not decide the run it names, nor edit the card it was clicked on)
        is_copy = self.copies.is_copy(thread_id, channel, message_ts)
        in_thread = run_channel == channel and (_clicked_thread(job.body) == thread_ts or is_copy)
        if not clicker or not thread_ts or not (in_thread or on_home or is_copy):
            self.slack.ephemeral(channel, clicker, None,
                                 "That button does not belong to this conversation; nothing was done.")
            return
        # claimed when it is applied, under the thread's lock (Agent.decide): a claim cannot outlive a process
        # that died before its decision landed, so a second click after a crash works
        key = f"decision:{thread_id}:{interrupt_id}"
        clicked_in = HOME if on_home else "" if in_thread else channel
        return ApplyDecision(run_channel, thread_ts, thread_id, interrupt_id, decision, clicker, message_ts, key,
                             clicked_in=clicked_in)

    def decide(self, job: ApplyDecision) -> None:
        channel, thread_ts, thread_id = job.channel, job.thread_ts, job.thread_id
        interrupt_id, decision, clicker = job.interrupt_id, job.decision, job.clicker
        progress = ProgressMessage(self.client, channel, thread_ts, interval=self.progress_interval)
        clicked = (job.clicked_in or channel, job.message_ts)

        def tell_clicker(text: str) -> None:
            if job.clicked_in == HOME:  # no ephemeral messages there: the Home tab shows it, refreshed
                self.show_home(HomeOpened(clicker, "home"), notice=text)
            else:
                self.slack.ephemeral(clicked[0], clicker, None if job.clicked_in else thread_ts, text)

        def on_event(event: ProgressEvent) -> None:
            progress.event(event)
            if isinstance(event, ApprovalDecided) and event.approval.status != "expired":  # (told once, below)
                record = event.approval
                self._update_every_copy(thread_id, f"Request {record.status}", kit.decided_blocks(
                    self.agent.result(thread_id), record.status, record.by, record.at), also=clicked)

        reply_to = {"key": job.claim, "kind": "decision", "channel": channel, "thread_ts": thread_ts,
                    "clicker": clicker, "decision": decision}
        try:
            result = self.agent.decide(thread_id, decision, user=clicker, interrupt_id=interrupt_id,
                                       interface="slack", on_event=on_event, claim=job.claim, reply_to=reply_to)
        except NothingPending as exc:
            log.info("nothing to %s on %s: %s", decision, thread_id, exc)
            tell_clicker(self._why_taken(thread_id, interrupt_id))
            return
        except Exception:
            log.exception("decision on %s failed", thread_id)
            current = self.agent.result(thread_id).pending
            if current and current.get("interrupt_id") == interrupt_id:
                self.claims.release(job.claim)  # the decision never reached the graph: let a new click try again
            tell_clicker("Something went wrong on my side; please try again.")
            self._answered(thread_id, job.claim)
            return
        try:  # the answer first, then the progress message's last edit (see _run_and_answer)
            with self._answering(thread_id, job.claim):
                self._decided(job, result, tell_clicker, clicked)
        finally:
            progress.finish()

    def _decided(self, job: ApplyDecision, result: RunResult,
                 tell_clicker: Callable[[str], None], clicked: tuple[str, str | None]) -> None:
        """After a decision: the clicker told of a refusal, or the card and its copies updated and the answer
        posted."""
        channel, thread_ts, thread_id, decision, clicker = (job.channel, job.thread_ts, job.thread_id, job.decision,
                                                            job.clicker)
        if result.approval.status == "expired":  # a late click: the expiry notice, once, as the sweep gives it
            tell_clicker(f"Nothing to {decision}: this approval request expired at "
                         f"{clock_time(self.agent.snapshot(thread_id).values['plan'].expires_at)}; nothing was "
                         "purged.")
            expiry.tell_expired(self.agent, thread_id, self.tell_expired)
            return
        if result.notice:
            tell_clicker(f"You cannot {decision} this: {_refusal(result.notice)}.")
            if result.pending:  # a refusal opens a fresh interrupt: give every copy's buttons its id
                self._update_every_copy(thread_id, result.reply, kit.approval_blocks(result), also=clicked)
            return
        if job.clicked_in == HOME:
            self.show_home(HomeOpened(clicker, "home"), notice=kit.decided_on_home(
                channel, result.approval.status, self.slack.permalink(channel, thread_ts)))
        self._finish(result, channel, thread_ts, None, job.claim)

    # --- App Home ----------------------------------------------------------------------------------------

    def show_home(self, job: HomeOpened, *, notice: str | None = None) -> None:
        """Publish the person's Home tab: their recent requests, what waits for their approval (policy decides,
        in ``Agent.waiting_for``), how to ask. Published again after a click there, with what happened."""
        if not job.user or job.tab != "home":
            return
        view = kit.home_view(recent=self.agent.requests_of(job.user), waiting=self.agent.waiting_for(job.user),
                             notice=notice)
        self.slack.publish_home(job.user, view)

    # --- approval copies: the approvers' channel, approvers' DMs ------------------------------------------

    @property
    def copies(self):
        return self.agent.storage.approval_copies

    def _tell_approvers(self, result: RunResult, channel: str, card_ts: str | None) -> None:
        """Remember the card in the thread, and copy it where policy says approvers look
        (``approval.channel``, approvers' DMs), each copy linking to the thread."""
        if card_ts:
            self.copies.add(result.thread_id, channel, card_ts)
        places = approval_recipients(self.agent.config, asked_in=channel)
        if not places:
            return
        header = kit.copy_header(channel, self.slack.permalink(channel, card_ts))
        for place in places:
            posted = self.slack.post_at(place, f"Approval needed: {result.reply}",
                                        [header, *kit.approval_blocks(result)])
            if posted is not None:
                self.copies.add(result.thread_id, *posted)

    def _update_every_copy(self, thread_id: str, text: str, blocks: list[dict],
                           also: tuple[str, str | None] = ("", None)) -> None:
        """Show ``blocks`` on the card and every copy of it (copies keep their header linking to the thread).
        ``also``: the message clicked, updated even when it predates the copies being recorded."""
        run_channel, _, thread_ts = thread_id.partition(":")
        places = self.copies.of(thread_id)
        if also[1] and also not in places:
            places.append((also[0], also[1]))
        header = None
        for channel, ts in places:
            if channel == run_channel:
                self.slack.update(channel, ts, text, blocks)
                continue
            if header is None:
                card = next((t for c, t in places if c == run_channel), None)
                header = kit.copy_header(run_channel, self.slack.permalink(run_channel, card or thread_ts))
            self.slack.update(channel, ts, text, [header, *blocks])

    def _button_value(self, action: dict[str, Any], channel: str, clicker: str, *keys: str) -> tuple[str, ...] | None:
        """The ids a button of ours carries in its JSON value; None (and the clicker told) for any other button."""
        try:
            value = json.loads(action.get("value") or "")
            return tuple(str(value[key]) for key in keys)
        except (ValueError, KeyError, TypeError):
            self.slack.ephemeral(channel, clicker, None, "That button is not one of mine; nothing was done.")
            return None

    def _why_taken(self, thread_id: str, interrupt_id: str) -> str:
        result = self.agent.result(thread_id)
        status = result.approval.status
        if status in ("approved", "denied"):
            return f"Nothing to do: this request was already {status} by {kit.mention(result.approval.by)}."
        if status == "expired":
            return "Nothing to do: this approval request expired. Ask again if it is still needed."
        if result.pending and result.pending.get("interrupt_id") == interrupt_id:
            return "Someone is deciding on this request right now; see the thread in a moment."
        return "Nothing to do: that approval request is no longer current; use the latest message."

    # --- the /cachebot command -------------------------------------------------------------------------------

    def command(self, job: SlashCommand) -> AnswerRequest | AnswerPrivately | None:
        """``/cachebot purge|check|history|help …``: purge and history run in a thread under a channel message
        saying who asked what; check and help answer the asker only. Same agent, same policy as a mention."""
        fields = job.command
        user, channel = fields.get("user_id") or "", fields.get("channel_id") or ""
        trigger, response_url = fields.get("trigger_id") or "", fields.get("response_url") or ""
        text = " ".join(str(fields.get("text") or "").split())
        verb, _, rest = text.partition(" ")
        verb = verb.lower()
        if not user or not channel:
            return None
        if trigger and not self.claims.claim(f"command:{trigger}"):
            return None  # the same command delivered twice
        if verb in ("", "help"):
            self.slack.respond(response_url, "How to use /cachebot", [kit.section(kit.COMMAND_HELP)])
            return None
        if verb not in IN_CHANNEL_VERBS + PRIVATE_VERBS:
            self.slack.respond(response_url, "Unknown command", [kit.section(kit.unknown_command(verb))])
            return None
        if verb != "history" and not rest:
            self.slack.respond(response_url, "A URL is needed", [kit.section(kit.needs_urls(verb))])
            return None
        if verb in PRIVATE_VERBS:
            return AnswerPrivately(channel, f"{channel}:command-{trigger or uuid.uuid4().hex}", user, text, verb,
                                   response_url)
        return self._start_in_channel(channel, user, text, verb, response_url)

    def _start_in_channel(self, channel: str, user: str, text: str, verb: str,
                          response_url: str) -> AnswerRequest | None:
        """A channel message saying who asked what; the request runs in its thread, like a mention would."""
        echo = kit.command_echo(user, text)
        root = self.slack.post(channel, None, f"/cachebot {verb}", [kit.section(echo)])
        if root is None:
            self.slack.respond(response_url, "I cannot post in this conversation: invite me to it (`/invite "
                                             "@cachebot`) or write to me directly.")
            return None
        return self._taken_in(AnswerRequest(channel, root, f"{channel}:{root}", user, text, None,
                                            intent="purge" if verb == "purge" else None,
                                            key=f"command:{channel}:{root}"), _url_count(text))

    def answer_privately(self, job: AnswerPrivately) -> None:
        """Run a request whose answer only the asker sees (``/cachebot check``)."""
        try:
            result = self.agent.ask(job.message, user=job.user, channel=job.channel, thread_id=job.thread_id,
                                    interface="slack", chosen_intent=_intent(job.intent))
        except Exception:
            log.exception("run %s failed", job.thread_id)
            self.slack.respond(job.response_url, "Something went wrong on my side; please try again.")
            return
        self.slack.respond(job.response_url, result.reply)

    # --- the message shortcut "Clear caches for links in this message" --------------------------------------

    def open_clear_links(self, job: MessageShortcut) -> None:
        """Open the modal listing the message's links: ours as checkboxes, the rest as not touched (screened by
        the agent, so the same allow-list as a request)."""
        body = job.body
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id") or ""
        ts, trigger = message.get("ts"), body.get("trigger_id")
        if not channel or not ts or not trigger:
            return
        urls, rejected = self.agent.screen(message.get("text") or "")
        thread_ts = message.get("thread_ts") or ts  # a reply in a thread: answer in that thread
        self.slack.open_view(trigger, kit.clear_links_view(urls, rejected, channel=channel, thread_ts=thread_ts))

    def clear_links(self, job: ModalSubmitted) -> AnswerRequest | None:
        """The modal submitted: a purge of the ticked links by the submitter, in a thread under the message. The
        links are indices into the modal's own metadata, and the run screens them again like any request."""
        body = job.body
        view = body.get("view") or {}
        user = (body.get("user") or {}).get("id") or ""
        try:
            metadata = json.loads(view.get("private_metadata") or "")
            channel, thread_ts, offered = str(metadata["channel"]), str(metadata["thread_ts"]), list(metadata["urls"])
        except (ValueError, KeyError, TypeError):
            log.warning("a submitted modal without our metadata; ignored")
            return None
        if not user or not channel or not thread_ts or not self.claims.claim(f"view:{view.get('id') or thread_ts}"):
            return None
        chosen = kit.chosen_links(view, [str(url) for url in offered])
        if not chosen:
            self.slack.ephemeral(channel, user, thread_ts, "You ticked no links, so nothing was cleared.")
            return None
        thread_id = f"{channel}:{thread_ts}"
        if self.agent.result(thread_id).pending:
            self.slack.ephemeral(channel, user, thread_ts, "A request in that thread is waiting for approval; "
                                                          "decide on it first.")
            return None
        message = "purge " + " ".join(chosen)
        return self._taken_in(AnswerRequest(channel, thread_ts, thread_id, user, message, None, intent="purge",
                                            key=f"view:{view.get('id') or thread_ts}"), len(chosen))

    # --- actions: an offer ("Purge these N pages" / "Just check them") ---------------------------------------

    def offer_click(self, job: OfferClick) -> TakeOffer | None:
        """An offer's button: checked against the thread, claimed (one answer per question), then run."""
        body = job.body
        clicker, channel, message_ts = _clicked(body)
        choice = "purge" if job.action.get("action_id") == kit.OFFER_PURGE_ACTION else "check"
        named = self._button_value(job.action, channel, clicker, "run", "offer")
        if named is None:
            return
        thread_id, offer_id = named
        run_channel, _, thread_ts = thread_id.partition(":")
        container = body.get("container") or {}
        clicked_in = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts") or thread_ts
        if not clicker or run_channel != channel or not thread_ts or clicked_in != thread_ts:
            self.slack.ephemeral(channel, clicker, None,
                                 "That button does not belong to this conversation; nothing was done.")
            return
        key = f"offer:{thread_id}:{offer_id}"
        if not self.claims.claim(key):
            self.slack.ephemeral(channel, clicker, thread_ts,
                                 "Nothing to do: someone already answered this question.")
            return
        offer = self.agent.offer(thread_id)
        if offer is None or offer.id != offer_id:
            self.slack.ephemeral(channel, clicker, thread_ts, "Nothing to do: a newer request in this thread "
                                                              "replaced that question.")
            return
        if message_ts:
            self.slack.update(channel, message_ts, f"{choice} chosen",
                              kit.offer_taken_blocks(self.agent.result(thread_id), choice, clicker))
        # the lease records the request the offer stands for (its URLs, from the stored run), as a typed one would
        taken = self._taken_in(AnswerRequest(channel, thread_ts, thread_id, clicker, f"{choice} " + " ".join(
            offer.urls), None, intent=choice, key=key), len(offer.urls))
        return TakeOffer(channel, thread_ts, thread_id, offer_id, choice, clicker, taken.status_ts, key=key)

    def take_offer(self, job: TakeOffer) -> None:
        """A normal request by the clicker for exactly the offer's URLs: same policy, same approval rules."""
        self._run_and_answer(job.channel, job.thread_ts, job.thread_id, job.status_ts,
                             lambda on_event: self.agent.take_offer(job.thread_id, job.offer_id, job.choice,
                                                                    user=job.clicker, channel=job.channel,
                                                                    interface="slack", on_event=on_event,
                                                                    reply_to=self._reply_to(job) if job.key
                                                                    else None),
                             key=job.key)


class NotTold(Exception):
    """Slack did not take a message that had to get through (after the client's retries)."""


def _assistant_key(channel: str, thread_ts: str) -> str:
    return f"assistant:{channel}:{thread_ts}"


def _on_home(body: dict[str, Any]) -> bool:
    """The click came from the app's Home tab (a view we published to the clicker), not from a message."""
    return (body.get("container") or {}).get("type") == "view" and (body.get("view") or {}).get("type") == "home"


def _intent(chosen: str | None) -> Intent | None:
    return Intent(chosen) if chosen else None


def _clicked(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """Who clicked (the signed payload's user), in which channel, on which message."""
    container = body.get("container") or {}
    clicker = (body.get("user") or {}).get("id") or ""
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id") or ""
    message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return clicker, channel, message_ts


def _clicked_thread(body: dict[str, Any]) -> str | None:
    """The thread of the message clicked (its own ts when it is a thread's first message)."""
    container, message = body.get("container") or {}, body.get("message") or {}
    return (container.get("thread_ts") or message.get("thread_ts") or container.get("message_ts")
            or message.get("ts"))


def _url_count(message: str) -> int:
    try:
        return len(dict.fromkeys(extract_candidates(message)))
    except Exception:  # a status line is not worth failing a request over
        return 0


def _refusal(notice: str) -> str:
    """The graph records refusals as "<user>: <reason>"; the clicker only needs the reason."""
    return notice.split(": ", 1)[1] if ": " in notice else notice
