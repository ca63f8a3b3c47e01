"""Takeover: finish, and answer, the requests whose process stopped (a crash, a kill, a lost machine).

Every run holds a lease in ``cachebot_runs`` (``agent.storage.runs``) from the moment a front end takes the
request in until its final message is out, and beats its heartbeat meanwhile (``agent/service/leases.py``);
while the graph runs it also holds the thread's lock (``agent.storage.locks``).

``recover(agent)`` looks at the leases nobody holds any more and, for each, takes the thread's lock (without
waiting: a live process's run is skipped), reads the row again, takes the lease over and looks at the thread's
last checkpoint:

- accepted but never started (the process died between "Looking at…" and the run): the request is run now,
  from what the front end recorded (``reply_to``);
- waiting for approval: left waiting (a pending approval is never decided by recovery); the front end is told,
  so a card that was never posted is posted, or a click that never landed can be made again;
- nothing left to run (it finished just before dying): the audit record is brought up to date and the answer
  given;
- otherwise the graph continues from its last checkpoint (``Agent.continue_run``: the interrupted step runs
  again; purges are idempotent) and the report goes where the request came from (``notify``);
- if continuing is impossible (``resume=False``, too many takeovers, or it raises), the request is marked
  ``interrupted`` in the audit and its thread is told what was and was not purged.

A lease found ``answering`` may belong to a process killed after its final message was out: a front end whose
messages stay (Slack) looks for that message before answering (``slack_app.handlers.Handlers.tell_recovered``:
the final message's metadata names its request), so ``notify`` answers at most once per request.

It runs when ``cachebot slack`` starts, by ``cachebot recover``, and on an interval in every live process
(``agent/service/sweeper.py``: only leases whose heartbeat is older than ``recovery.lease_seconds``). The thread
is told "picked up again after a restart" once, whoever picks it up (``told`` on the row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from agent.models import Intent
from agent.periods import utc_now
from agent.storage.checkpoints import REQUEST_ID_KEY
from agent.storage.runs import ACCEPTED, ANSWERING, FINISHED, IN_GRAPH, RUNNING
from agent.words import RESTARTED, taken_over_finished, taken_over_stopped

if TYPE_CHECKING:
    from agent.models import RunResult
    from agent.service.agent import Agent

log = logging.getLogger(__name__)

# outcomes a front end answers; "busy" (a live process has it) and "skipped" (taken meanwhile) are not told
TOLD = ("finished", "interrupted", "already_done", "waiting_approval")


@dataclass
class Recovered:
    thread_id: str
    outcome: str  # "finished" (continued to the end), "interrupted", "already_done", "waiting_approval", "busy"
    interface: str | None = None
    channel: str | None = None
    result: RunResult | None = None
    error: str | None = None
    reply_to: dict[str, Any] | None = field(default=None)  # the front end's, as it recorded it
    first_time: bool = True  # the thread was not yet told its request was picked up again
    was: str | None = None  # the lease's status when it was taken over


Notify = Callable[[Recovered], None]


def recover(agent: Agent, *, resume: bool = True, notify: Notify | None = None,
            stale_after: float | None = None) -> list[Recovered]:
    """Finish or report every run whose holder is gone. Safe to run on every replica at once.

    ``stale_after=None`` (on start, ``cachebot recover``): every lease in the graph whose thread lock is free,
    plus those outside it (accepted, answering) whose heartbeat is ``recovery.lease_seconds`` old. A number (the
    periodic sweep): only leases whose heartbeat is that many seconds old."""
    lease_seconds = agent.config.recovery.lease_seconds
    if stale_after is None:
        rows = [r for r in agent.runs.all() if r["status"] in IN_GRAPH]
        seen = {r["thread_id"] for r in rows}
        rows += [r for r in agent.runs.stale(older_than=lease_seconds)
                 if r["thread_id"] not in seen]
    else:
        rows = agent.runs.stale(older_than=stale_after)
    done: list[Recovered] = []
    for row in rows:
        item = recover_one(agent, row["thread_id"], resume=resume, notify=notify,
                           stale_after=lease_seconds if stale_after is None else stale_after)
        if item is not None:
            done.append(item)
    return done


def recover_one(agent: Agent, thread_id: str, *, resume: bool = True, notify: Notify | None = None,
                stale_after: float) -> Recovered | None:
    """Take one thread's lease over if its holder is gone; None when there was nothing to take."""
    with agent.locks.try_hold(thread_id) as got:
        if not got:  # a live process is running it (or another replica is recovering it right now)
            row = agent.runs.get(thread_id) or {}
            return Recovered(thread_id, "busy", row.get("interface"), row.get("channel"))
        current = agent.runs.get(thread_id)
        if current is None or current["status"] == FINISHED or not _holder_gone(agent, current, stale_after):
            return None  # finished, or picked up by another replica, between our listing and the lock
        agent.runs.take_over(thread_id)
        agent.heartbeat.hold(thread_id)  # ours now: beaten until answered
        if current["takeovers"] + 1 > agent.config.recovery.max_takeovers:
            item = _interrupted(agent, current, f"it was picked up {current['takeovers']} times already")
        else:
            item = _recover_one(agent, current, resume=resume)
    _answer(agent, item, notify)
    return item


def _holder_gone(agent: Agent, row: dict[str, Any], stale_after: float) -> bool:
    """We hold the thread lock: a row in the graph has no live holder (it would hold the lock); outside the graph
    (accepted, answering) the heartbeat says."""
    if row["status"] in IN_GRAPH:
        return True
    beat = row.get("heartbeat_at")
    return beat is None or (utc_now() - beat).total_seconds() >= stale_after


def _answer(agent: Agent, item: Recovered, notify: Notify | None) -> None:
    """Give the request's final message (front end's ``notify``), then finish the lease. When telling fails the
    lease is left un-beaten, so a later sweep tries again (``recovery.max_takeovers`` bounds it)."""
    if notify is None or item.outcome not in TOLD:
        agent.answered(item.thread_id)
        return
    try:
        notify(item)
    except Exception:
        log.exception("could not tell %s about its recovered run", item.thread_id)
        agent.not_answered(item.thread_id)
        return
    agent.answered(item.thread_id)
    if item.first_time:
        agent.runs.mark_told(item.thread_id)


def _recover_one(agent: Agent, row: dict[str, Any], *, resume: bool) -> Recovered:
    thread_id, request_id = row["thread_id"], row.get("request_id")
    base = {"interface": row.get("interface"), "channel": row.get("channel"), "reply_to": row.get("reply_to"),
            "first_time": not row.get("told"), "was": row["status"]}
    if row["status"] == ACCEPTED:
        return _start_accepted(agent, row, base, resume=resume)
    snapshot = agent.snapshot(thread_id)
    if snapshot.interrupts:
        return Recovered(thread_id, "waiting_approval", **base, result=agent.result(thread_id, request_id=request_id))
    asked = row.get("reply_to") or {}
    if row["status"] == RUNNING and asked.get("message") and asked.get("user") and \
            _never_checkpointed(snapshot, request_id):
        # killed before the graph's first step was saved: what the thread shows is nothing, or an earlier
        # request's end; this request is run again from what was asked (under the id its lease gave it)
        return _start_accepted(agent, row, base, resume=resume)
    if not snapshot.next and not snapshot.tasks:  # (a task whose writes were saved is not in .next, but in .tasks)
        result = agent.result(thread_id, request_id=request_id)
        if request_id and row["status"] != ANSWERING:
            agent.record_result(request_id, thread_id, result)
        return Recovered(thread_id, "already_done", **base, result=result)
    if resume:
        log.info("taking over run %s from its last checkpoint (next: %s)", thread_id, ", ".join(snapshot.next))
        try:
            result = agent.continue_run(thread_id, request_id=request_id, interface=row.get("interface"),
                                        channel=row.get("channel"))
            return Recovered(thread_id, "finished", **base, result=result)
        except Exception as exc:
            log.exception("could not finish run %s after a restart", thread_id)
            error = f"{type(exc).__name__}: {exc}"
    else:
        error = "recovery was asked not to resume runs"
    return _interrupted(agent, row, error)


def _never_checkpointed(snapshot: Any, request_id: str | None) -> bool:
    """No checkpoint of this request's run was saved: none at all, or the last one is another request's."""
    if not snapshot.values and snapshot.created_at is None:
        return True
    return request_id is not None and (snapshot.metadata or {}).get(REQUEST_ID_KEY) not in (None, request_id)


def _start_accepted(agent: Agent, row: dict[str, Any], base: dict[str, Any], *, resume: bool) -> Recovered:
    """A request accepted but never run: run it now from what the front end recorded (we hold the lock)."""
    thread_id, asked = row["thread_id"], row.get("reply_to") or {}
    if not resume or not asked.get("message") or not asked.get("user"):
        return _interrupted(agent, row, "it had not started, and what was asked is not known")
    try:
        result = agent.ask_locked(str(asked["message"]), user=str(asked["user"]), thread_id=thread_id,
                                  channel=row.get("channel"), interface=row.get("interface"),
                                  chosen_intent=Intent(asked["intent"]) if asked.get("intent") else None,
                                  request_id=row.get("request_id"))
    except Exception as exc:
        log.exception("could not run accepted request %s after a restart", thread_id)
        return _interrupted(agent, row, f"{type(exc).__name__}: {exc}")
    return Recovered(thread_id, "finished", **base, result=result)


def _interrupted(agent: Agent, row: dict[str, Any], error: str) -> Recovered:
    thread_id, request_id = row["thread_id"], row.get("request_id")
    result = None
    try:
        result = agent.result(thread_id, request_id=request_id)
        if request_id:
            agent.record_result(request_id, thread_id, result)  # the plan and intent, at least
            agent.audit.request_interrupted(request_id, detail=error, at=agent.context.now())
    except Exception:
        log.exception("could not record run %s as interrupted", thread_id)
    return Recovered(thread_id, "interrupted", row.get("interface"), row.get("channel"), result=result,
                     error=error, reply_to=row.get("reply_to"), first_time=not row.get("told"), was=row["status"])


def interrupted_message(item: Recovered) -> str:
    return taken_over_stopped(item.result, item.error or "")


def finished_message(item: Recovered) -> str:
    return taken_over_finished()


__all__ = ["RESTARTED", "Notify", "Recovered", "finished_message", "interrupted_message", "recover", "recover_one"]
