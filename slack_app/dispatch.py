"""Where the Slack front end's jobs run: thread pools in this process, or worker processes.

Threading model
    Our listeners do nothing but hand a typed job (``slack_app/jobs.py``) to ``Dispatcher.take_in`` and
    ``ack()`` (microseconds), so Bolt runs them inline on the HTTP request's thread and answers Slack as soon
    as they return. The intake job (filters, claims, the "Looking at…" reply) runs on the intake pool and
    returns the run to start, which goes to the runs pool. Two ways to run them:

    threads (``workers=0``; a one-core machine; tests that build a ``Dispatcher`` themselves)
        ``Dispatcher.intake`` and ``Dispatcher.runs`` are thread pools in this process, sharing its ``Handlers``.
    processes (``workers=N``; ``cachebot slack`` by default on more than one core: ``default_workers``)
        Intake and runs go to pools of worker processes, each with its own ``Handlers`` (Agent, Web API client,
        claims connection), optionally at a lower CPU priority.

Why processes: the ack path (HTTP, signature check, Bolt's dispatch) and the agent's work (graph, checkpoints,
audit: tens of milliseconds of CPU per run) share one GIL when they share a process, so a backlog of runs turns
into slow acks, and Slack retries anything not acked within 3 s. In worker mode the app process only acks and
queues. Each worker builds its ``Handlers`` from a ``WorkerSpec`` (config and Slack settings) in the pool's
initializer; jobs are picklable dataclasses, and an intake job returns the run to start, which the app process
hands to the runs pool. Exactly-once does not depend on the process: claims and thread locks are cross-process
(``agent/storage/``). Run workers run at ``nice`` (lower CPU priority than the app process by default) because an
ack has a deadline and a run does not; intake workers keep the app's priority (they post the first reply).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

from agent.config import AppConfig
from agent.service.agent import Agent
from slack_app.handlers import Handlers
from slack_app.jobs import IntakeJob, Job, RunJob
from slack_app.slack_api import make_client, slack_context

log = logging.getLogger("cachebot.slack")

DEFAULT_NICE = 19  # the lowest priority: an ack has a 3 s deadline, a run has none
MAX_DEFAULT_WORKERS = 4


def default_workers(cpus: int | None = None) -> int:
    """Run worker processes when nobody said (``cachebot slack`` without ``--workers``): one per core, up to
    ``MAX_DEFAULT_WORKERS``, when there is more than one core; 0 (threads here) on one core, where a worker could
    only take turns with the app process anyway. Threads cannot keep acks fast while a big purge runs: with a
    5,000-URL purge in the app process, ack p99 and the first reply in a thread wait on its GIL
    (bench/slack_ack.py prints both modes)."""
    cpus = os.cpu_count() if cpus is None else cpus
    return 0 if (cpus or 1) < 2 else min(cpus, MAX_DEFAULT_WORKERS)


class Dispatcher:
    """Runs each intake job, then the run it asks for, on threads or worker processes; counts what is still
    pending so ``wait_idle`` can wait for it. Listeners hand their jobs to ``take_in``."""

    def __init__(self, handlers: Handlers, *, run_workers: int = 8, intake_workers: int = 16, workers: int = 0,
                 intake_processes: int = 1, worker_spec: WorkerSpec | None = None):
        """``workers``: run intake and agent runs in that many worker processes built from ``worker_spec``
        (plus ``intake_processes`` for intake); 0 keeps them on thread pools in this process."""
        self.handlers = handlers
        self.runs = ThreadPoolExecutor(max_workers=run_workers, thread_name_prefix="cachebot-run")
        self.intake = ThreadPoolExecutor(max_workers=intake_workers, thread_name_prefix="cachebot-intake")
        self.processes: WorkerPools | None = None
        if workers:
            if worker_spec is None:
                raise ValueError("workers > 0 needs a worker_spec (config and Slack settings for the workers)")
            self.processes = WorkerPools(worker_spec, runs=workers, intake=max(1, intake_processes))
        self.received = 0  # requests that reached a listener (tests and benchmarks wait on it)
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()

    def take_in(self, job: IntakeJob) -> None:
        """Queue an intake job; the run it returns, if any, goes to the runs pool.

        While the intake workers are still starting (``WorkerPools.warm_up``: seconds on a busy machine), intake
        runs on this process's threads: the event was acked, and until intake has claimed it and written its lease
        it exists only in memory; a process killed while its first events waited for a worker lost them (Slack
        does not send an acked event again; bench/chaos.py --sqlite lost 12 of 60 this way)."""
        if self.processes is not None and not self.processes.warming:
            self._submit(self.processes.intake, _handle, job, then=self._hand_on)
        else:
            self._submit(self.intake, self._intake_then_run, job)

    def start(self, job: RunJob) -> None:
        """Queue a run that no intake asked for (crash recovery on start)."""
        if self.processes is not None:
            self._submit(self.processes.runs, _handle, job)
        else:
            self._submit(self.runs, self.handlers.handle, job)

    def count_received(self) -> None:
        with self._pending_lock:
            self.received += 1

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every job handed on has finished (tests, benchmarks, graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._pending_lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        if self.processes is not None:
            self.wait_idle(60)  # the pools' done callbacks may still be handing runs on
            self.processes.close()
        self.intake.shutdown(wait=True)
        self.runs.shutdown(wait=True)

    def _intake_then_run(self, job: IntakeJob) -> None:
        run = self.handlers.handle(job)
        if run is not None:
            self.start(run)

    def _hand_on(self, future: Future) -> None:
        """An intake job finished in a worker process: start the run it asked for (before it stops counting
        as pending, so ``wait_idle`` never sees a gap)."""
        if future.cancelled() or future.exception() is not None:
            return
        run = future.result()
        if run is not None and self.processes is not None:
            self._submit(self.processes.runs, _handle, run)

    def _submit(self, pool: Executor | HealingPool, fn: Callable[..., Any], job: Job,
                then: Callable[[Future], None] | None = None) -> None:
        future = pool.submit(fn, job)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(lambda f: self._done(f, then))

    def _done(self, future: Future, then: Callable[[Future], None] | None = None) -> None:
        try:
            if then is not None:
                then(future)
        except Exception:
            log.exception("handing on a background job failed")
        finally:
            with self._pending_lock:
                self._pending.discard(future)
        if not future.cancelled() and future.exception():  # never let one bad event or click go silently
            log.error("background job failed", exc_info=future.exception())


# --- worker processes ----------------------------------------------------------------------------------------


@dataclass
class WorkerSpec:
    """What a worker process needs to build its own Agent and Web API client (all picklable)."""

    config: AppConfig
    bot_token: str = field(repr=False)
    api_url: str | None = None
    progress_interval: float = 1.0
    nice: int = DEFAULT_NICE  # added to the worker's niceness: runs yield the CPU to the ack path
    log_level: int | None = None


_handlers: Handlers | None = None  # this worker's Handlers (set by _init)


def _exit_when_the_app_dies(interval: float = 0.5) -> None:
    """A worker never outlives its app process. Killed (kill -9, the OOM killer), the app cannot stop its
    workers, and one left running would go on with its run and post its answer while a live replica's sweeper
    takes the same run over: two answers in one thread. (Not PR_SET_PDEATHSIG: it fires when the *thread* that
    started the worker ends, and pools are started from short-lived threads.)"""
    parent = multiprocessing.parent_process()
    app = parent.pid if parent is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == app:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="app-watch", daemon=True).start()


def _init(spec: WorkerSpec) -> None:
    global _handlers
    _exit_when_the_app_dies()
    if spec.nice:
        try:
            os.nice(spec.nice)
        except OSError:  # not allowed here: run at the app's priority
            pass
    if spec.log_level is not None:
        logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    client = make_client(spec.bot_token, spec.api_url)
    agent = Agent(spec.config, context=slack_context(spec.config, client))
    _handlers = Handlers(agent, client, progress_interval=spec.progress_interval)


def _handle(job: Job) -> RunJob | None:
    """Do one job in this worker; an intake job returns the run to start, which goes back to the app process."""
    if _handlers is None:
        raise RuntimeError("no Handlers in this process: jobs run only in pools started with _init")
    return _handlers.handle(job)


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
        # Intake keeps the app's priority: it posts the first message a person sees in the thread, and is quick.
        # Niced with the runs, it waited behind any busy process on the machine (event → first message p50 of
        # seconds in bench/slack_ack.py on a loaded machine); only runs yield the CPU.
        self.intake = HealingPool(intake, replace(spec, nice=0))
        self.runs = HealingPool(runs, spec)
        self.sizes = {"intake": intake, "runs": runs}
        self.warming = False  # warm_up started and the intake workers are not up yet (Dispatcher.take_in)

    def warm_up(self, timeout: float = 120.0) -> None:
        """Start every worker now (each builds its Agent: about a second) rather than on the first events.
        Until the intake workers answer, ``warming`` is True (intake then runs in the app process)."""
        self.warming = True
        try:
            intake = [self.intake.submit(_ping) for _ in range(self.sizes["intake"])]
            runs = [self.runs.submit(_ping) for _ in range(self.sizes["runs"])]
            for future in intake:
                future.result(timeout=timeout)
        finally:
            self.warming = False
        for future in runs:
            future.result(timeout=timeout)

    def close(self) -> None:
        self.intake.shutdown(wait=True)
        self.runs.shutdown(wait=True)
