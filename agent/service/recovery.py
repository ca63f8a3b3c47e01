"""Crash recovery: finish (or report) the purges a process was sending when it died.

While a run sends purges (from the moment the graph's next step is ``execute`` until the run stops), the Agent
keeps a row in ``cachebot_runs`` (``agent.storage.runs``: status ``executing``, in the audit database) and
holds the thread's lock (``agent.storage.locks``). A finished or failed run deletes its row. So a row whose
thread lock can be taken belongs to a process that died mid-run.

``recover(agent)`` — run when ``cachebot slack`` starts and by ``cachebot recover`` — takes each such thread's
lock (without waiting: a live replica's run is skipped) and looks at its last checkpoint:

- nothing left to run (it finished just before dying): the row is cleared and the audit record brought up to date;
- waiting for approval: left waiting (a pending approval is never decided by recovery);
- otherwise the graph continues from its last checkpoint (``Agent.continue_run``: the interrupted step runs
  again; purges are idempotent) and the report goes where the request came from (``notify``);
- if continuing is impossible (``resume=False``, or it raises), the request is marked ``interrupted`` in the audit
  and its thread is told: "cachebot restarted during this purge; …".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from agent.models import RunResult
    from agent.service.agent import Agent

log = logging.getLogger(__name__)

RESTARTED = "cachebot restarted during this purge"


@dataclass
class Recovered:
    thread_id: str
    outcome: str  # "finished" (continued to the end), "interrupted", "already_done", "waiting_approval", "busy"
    interface: str | None = None
    channel: str | None = None
    result: RunResult | None = None
    error: str | None = None


Notify = Callable[[Recovered], None]


def recover(agent: Agent, *, resume: bool = True, notify: Notify | None = None) -> list[Recovered]:
    """Finish or report every run left ``executing`` by a dead process. Safe to run on every replica at once."""
    done: list[Recovered] = []
    for row in agent.runs.all():
        thread_id = row["thread_id"]
        with agent.locks.try_hold(thread_id) as got:
            if not got:  # a live process is running it (or another replica is recovering it right now)
                done.append(Recovered(thread_id, "busy", row.get("interface"), row.get("channel")))
                continue
            current = agent.runs.get(thread_id)
            if current is None:  # recovered by another replica between our listing and the lock
                continue
            item = _recover_one(agent, current, resume=resume)
        done.append(item)
        if notify is not None and item.outcome in ("finished", "interrupted"):
            try:
                notify(item)
            except Exception:
                log.exception("could not tell %s about its recovered run", thread_id)
    return done


def _recover_one(agent: Agent, row: dict[str, Any], *, resume: bool) -> Recovered:
    thread_id, request_id = row["thread_id"], row.get("request_id")
    base = {"interface": row.get("interface"), "channel": row.get("channel")}
    snapshot = agent.snapshot(thread_id)
    if snapshot.interrupts:
        agent.runs.finished(thread_id)
        return Recovered(thread_id, "waiting_approval", **base, result=agent.result(thread_id))
    if not snapshot.next and not snapshot.tasks:  # (a task whose writes were saved is not in .next, but in .tasks)
        result = agent.result(thread_id)
        if request_id:
            agent.record_result(request_id, thread_id, result)
        agent.runs.finished(thread_id)
        return Recovered(thread_id, "already_done", **base, result=result)
    if resume:
        log.info("recovering run %s from its last checkpoint (next: %s)", thread_id, ", ".join(snapshot.next))
        try:
            result = agent.continue_run(thread_id, request_id=request_id, interface=row.get("interface"),
                                        channel=row.get("channel"))
            return Recovered(thread_id, "finished", **base, result=result)
        except Exception as exc:
            log.exception("could not finish run %s after a restart", thread_id)
            error = f"{type(exc).__name__}: {exc}"
    else:
        error = "recovery was asked not to resume runs"
    if request_id:
        try:
            agent.record_result(request_id, thread_id, agent.result(thread_id))  # the plan and intent, at least
            agent.audit.request_interrupted(request_id, detail=error, at=agent.context.now())
        except Exception:
            log.exception("could not record run %s as interrupted", thread_id)
    agent.runs.finished(thread_id)
    return Recovered(thread_id, "interrupted", **base, error=error)


def interrupted_message(item: Recovered) -> str:
    return (f"{RESTARTED}; it was not finished and some caches may not have been purged. "
            "Please check the pages, or ask again.")


def finished_message(item: Recovered) -> str:
    return f"{RESTARTED}; I picked it up again from where it stopped and finished it. The report follows."
