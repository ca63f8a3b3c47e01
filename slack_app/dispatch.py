"""Worker processes for the Slack front end's intake and agent runs (``SlackFrontEnd(workers=N)``).

Why: the ack path (HTTP, signature check, Bolt's dispatch) and the agent's work (graph, checkpoints, audit:
tens of milliseconds of CPU per run) share one GIL when they share a process, so a backlog of runs turns into
slow acks, and Slack retries anything not acked within 3 s. In worker mode the app process only acks and
queues; intake (claims, the "Looking at…" reply) and runs happen in ``concurrent.futures`` process pools.

Each worker builds its own ``Agent``, Web API client and claims connection from a ``WorkerSpec`` (config and
Slack settings) in the pool's initializer, and holds a ``SlackFrontEnd`` without a Bolt app. A job is the
name of a ``SlackFrontEnd`` method and picklable arguments; an intake job returns the run to start, which the
app process hands to the runs pool. Exactly-once does not depend on the process: claims and thread locks are
cross-process (``agent/claims.py``). Workers run at ``nice`` (lower CPU priority than the app process by
default) because an ack has a deadline and a run does not.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from agent.config import AppConfig

log = logging.getLogger("cachebot.slack")

DEFAULT_NICE = 19  # the lowest priority: an ack has a 3 s deadline, a run has none


@dataclass
class WorkerSpec:
    """What a worker process needs to build its own Agent and Web API client (all picklable)."""

    config: AppConfig
    bot_token: str = field(repr=False)
    api_url: str | None = None
    progress_interval: float = 1.0
    nice: int = DEFAULT_NICE  # added to the worker's niceness: runs yield the CPU to the ack path
    log_level: int | None = None


_front: Any = None  # this worker's SlackFrontEnd (set by _init)


def _init(spec: WorkerSpec) -> None:
    global _front
    if spec.nice:
        try:
            os.nice(spec.nice)
        except OSError:  # not allowed here: run at the app's priority
            pass
    if spec.log_level is not None:
        logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    from agent.runner import Agent
    from slack_app.handlers import SlackFrontEnd
    from slack_app.slack_api import make_client, slack_context

    client = make_client(spec.bot_token, spec.api_url)
    agent = Agent(spec.config, context=slack_context(spec.config, client))
    _front = SlackFrontEnd(agent, client, signing_secret=None, run_workers=1, intake_workers=1, listener_workers=1,
                           progress_interval=spec.progress_interval)


def _call(name: str, args: tuple) -> Any:
    """Run ``SlackFrontEnd.<name>(*args)`` in this worker; returns what it returns when that is a Job."""
    result = getattr(_front, name)(*args)
    return result if isinstance(result, tuple) else None


def _ping() -> int:
    return os.getpid()


class HealingPool:
    """A process pool that replaces itself when a worker died (a crash breaks a ProcessPoolExecutor for good:
    every later submit would fail and the listener would answer 500, so Slack would retry forever)."""

    def __init__(self, size: int, spec: WorkerSpec):
        self._size, self._spec = size, spec
        self._lock = threading.Lock()
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process holding SQLite handles
        return ProcessPoolExecutor(max_workers=self._size, mp_context=context, initializer=_init,
                                   initargs=(self._spec,))

    def submit(self, fn, *args: Any) -> Future:
        """Like ``ProcessPoolExecutor.submit``; a job lost with a dead worker is run once more on a new pool.

        Running it again never purges twice: events and decisions are claimed, and runs take the thread lock."""
        outer: Future = Future()
        self._submit_into(outer, fn, args, again=True)
        return outer

    def _submit_into(self, outer: Future, fn, args: tuple, *, again: bool) -> None:
        pool = self._current()
        try:
            inner = pool.submit(fn, *args)
        except BrokenProcessPool:
            pool = self._replace(pool)
            inner = pool.submit(fn, *args)

        def settle(done: Future) -> None:
            error = done.exception()
            if isinstance(error, BrokenProcessPool) and again:
                self._replace(pool)
                self._submit_into(outer, fn, args, again=False)
            elif error is not None:
                outer.set_exception(error)
            else:
                outer.set_result(done.result())

        inner.add_done_callback(settle)

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is broken:
                log.error("a worker process died; starting a new pool of %d", self._size)
                self._pool = self._new()
            return self._pool

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


class WorkerPools:
    """Two process pools: ``intake`` (few, quick jobs, so "Looking at…" is not stuck behind runs) and ``runs``."""

    def __init__(self, spec: WorkerSpec, *, runs: int, intake: int = 1):
        self.intake = HealingPool(intake, spec)
        self.runs = HealingPool(runs, spec)
        self.sizes = {"intake": intake, "runs": runs}

    call = staticmethod(_call)

    def warm_up(self, timeout: float = 120.0) -> None:
        """Start every worker now (each builds its Agent: about a second) rather than on the first events."""
        futures = [pool.submit(_ping) for pool, n in ((self.intake, self.sizes["intake"]),
                                                      (self.runs, self.sizes["runs"])) for _ in range(n)]
        for future in futures:
            future.result(timeout=timeout)

    def close(self) -> None:
        self.intake.shutdown(wait=True)
        self.runs.shutdown(wait=True)
