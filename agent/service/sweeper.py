"""The periodic jobs every running cachebot does: take over runs whose holder stopped, and housekeeping.

``Sweeper(agent, jobs=[...], interval=...)`` runs each job, ``async def job(agent) -> None``, once per
``interval`` seconds (``recovery.sweep_seconds``, default 15) on an event loop of its own in a daemon thread.
A job that raises is logged and tried again next time; a slow job does not hold up the others (they run
concurrently) and is not started again while it still runs. Front ends add their own jobs to the list
(``standard_jobs`` gives the ones every process needs); the Slack app runs one Sweeper per process
(``slack_app/server.py``), and a single process can call ``sweep_once`` (``cachebot recover`` does the same
work once, by hand).

Nothing here needs to be elected: every job is safe on every replica at once (thread locks, claims, and
conditional updates decide who does a thing).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.service.recovery import Notify, recover_one

if TYPE_CHECKING:
    from agent.service.agent import Agent

log = logging.getLogger(__name__)

Job = Callable[["Agent"], Awaitable[None]]


class Sweeper:
    def __init__(self, agent: Agent, *, jobs: list[Job], interval: float | None = None):
        self.agent = agent
        self.jobs = list(jobs)
        self.interval = interval if interval is not None else agent.config.recovery.sweep_seconds
        self.sweeps = 0  # completed sweeps (tests wait on it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[int, asyncio.Task] = {}

    def add(self, job: Job) -> None:
        """Another periodic job (before ``start``)."""
        self.jobs.append(job)

    def start(self) -> Sweeper:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), name="cachebot-sweeper",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    async def sweep_once(self) -> None:
        """Every job once, together; returns when they all ended."""
        await asyncio.gather(*(self._guarded(job) for job in self.jobs))
        self.sweeps += 1

    async def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for index, job in enumerate(self.jobs):
                task = self._running.get(index)
                if task is None or task.done():  # a job still going from last time is not started twice
                    self._running[index] = asyncio.create_task(self._guarded(job))
            await asyncio.sleep(0)
            self.sweeps += 1
            left = self.interval - (time.monotonic() - started)
            await asyncio.to_thread(self._stop.wait, max(0.0, left))
        pending = [t for t in self._running.values() if not t.done()]
        if pending:  # give running jobs a moment to finish their step; a run taken over is in its own thread
            await asyncio.wait(pending, timeout=5)

    async def _guarded(self, job: Job) -> None:
        try:
            await job(self.agent)
        except Exception:
            log.exception("periodic job %s failed; it runs again at the next sweep", getattr(job, "__name__", job))


# --- the standard jobs --------------------------------------------------------------------------------------


def take_over_runs(notify: Notify | None = None) -> Job:
    """A job taking over every run whose lease heartbeat is older than ``recovery.lease_seconds``: each in a
    thread of its own (a purge taken over can take minutes), one at a time per thread."""
    in_hand: set[str] = set()
    guard = threading.Lock()

    async def take_over(agent: Agent) -> None:
        stale_after = agent.config.recovery.lease_seconds
        rows = await asyncio.to_thread(agent.runs.stale, older_than=stale_after)
        started = []
        for row in rows:
            thread_id = row["thread_id"]
            with guard:
                if thread_id in in_hand:
                    continue
                in_hand.add(thread_id)
            started.append(asyncio.create_task(asyncio.to_thread(one, agent, thread_id, stale_after)))
        if started:
            await asyncio.gather(*started)

    def one(agent: Agent, thread_id: str, stale_after: float) -> None:
        try:
            item = recover_one(agent, thread_id, notify=notify, stale_after=stale_after)
            if item is not None and item.outcome != "busy":
                log.info("took over run %s: %s", thread_id, item.outcome)
        except Exception:
            log.exception("could not take over run %s", thread_id)
        finally:
            with guard:
                in_hand.discard(thread_id)

    take_over.__name__ = "take_over_runs"
    return take_over


async def prune(agent: Agent) -> None:
    """Claims and finished leases older than ``recovery.keep_seconds`` (at least an hour: a Slack retry of an
    event already handled must still find its claim)."""
    keep = agent.config.recovery.keep_seconds
    claims = await asyncio.to_thread(agent.storage.claims.forget_older_than, keep)
    if agent.storage.intake_claims is not agent.storage.claims:  # SQLite: intake claims live with the leases
        claims += await asyncio.to_thread(agent.storage.intake_claims.forget_older_than, keep)
    leases = await asyncio.to_thread(agent.runs.prune, older_than=keep)
    if claims or leases:
        log.info("pruned %d claims and %d finished leases older than %g s", claims, leases, keep)


def standard_jobs(notify: Notify | None = None) -> list[Job]:
    """What every running process does on each sweep: take over stopped runs (answering through ``notify``),
    prune old claims and leases."""
    return [take_over_runs(notify), prune]
