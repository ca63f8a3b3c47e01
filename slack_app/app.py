"""The Slack front end, put together: a Bolt ``App`` whose listeners hand typed jobs to a dispatcher that runs
them through the handlers.

    listeners/ (ack, hand on)  ──►  dispatch.py (threads or worker processes)  ──►  handlers.py (the work)
                                                                                      └─► slack_api.py, blocks.py

Nothing here decides anything: how an event becomes a run is in ``handlers.py``, where it runs in
``dispatch.py``, how we talk to Slack in ``slack_api.py``; policy (who may approve, limits) is in ``agent/``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from agent.service import recovery
from agent.service.agent import Agent
from agent.service.expiry import expire_overdue_approvals
from agent.service.sweeper import Job, Sweeper, standard_jobs
from agent.storage.claims import ClaimStore
from slack_app.dispatch import Dispatcher, WorkerSpec
from slack_app.handlers import Handlers
from slack_app.jobs import RecoverRuns
from slack_app.listeners import actions, commands, events, shortcuts


class SlackFrontEnd:
    """A Bolt ``App`` wired to an ``Agent``. ``.app`` is what the HTTP server or Socket Mode handler drives."""

    def __init__(
        self,
        agent: Agent,
        client: WebClient,
        *,
        signing_secret: str,
        claims: ClaimStore | None = None,
        run_workers: int = 8,
        intake_workers: int = 16,
        listener_workers: int = 16,
        progress_interval: float = 1.0,
        token_verification: bool = True,
        workers: int = 0,
        intake_processes: int = 1,
        worker_spec: WorkerSpec | None = None,
    ):
        """``workers``: run intake and agent runs in that many worker processes built from ``worker_spec``
        (plus ``intake_processes`` for intake); 0 keeps them on thread pools in this process."""
        self.agent = agent
        self.client = client
        self.handlers = Handlers(agent, client, claims=claims, progress_interval=progress_interval)
        self.claims = self.handlers.claims
        self.dispatch = Dispatcher(self.handlers, run_workers=run_workers, intake_workers=intake_workers,
                                   workers=workers, intake_processes=intake_processes, worker_spec=worker_spec)
        self._listeners = ThreadPoolExecutor(max_workers=listener_workers, thread_name_prefix="cachebot-ack")
        self.app = App(
            client=client,
            signing_secret=signing_secret,
            # our listeners only queue and ack: run them inline, and answer as soon as they return
            process_before_response=True,
            listener_executor=self._listeners,
            token_verification_enabled=token_verification,
        )
        events.register(self.app, self.dispatch)
        actions.register(self.app, self.dispatch)
        commands.register(self.app, self.dispatch)
        shortcuts.register(self.app, self.dispatch)

    @property
    def received(self) -> int:
        """Requests that reached a listener (tests and benchmarks wait on it)."""
        return self.dispatch.received

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every job handed on has finished (tests, benchmarks, graceful shutdown)."""
        return self.dispatch.wait_idle(timeout)

    def recover(self, *, resume: bool = True) -> list[recovery.Recovered]:
        """Crash recovery now, in this thread (``Handlers.recover``)."""
        return self.handlers.recover(resume=resume)

    def tell_recovered(self, item: recovery.Recovered) -> None:
        self.handlers.tell_recovered(item)

    def start_recovery(self) -> None:
        """Crash recovery in the background, on the runs pool (on start: ``slack_app/server.py``)."""
        self.dispatch.start(RecoverRuns())

    def sweeper(self, *jobs: Job) -> Sweeper:
        """This process's periodic jobs (``agent/service/sweeper.py``): take over runs whose holder stopped
        (their threads answered here), prune old claims and leases, expire overdue approvals (their cards and
        threads told here), and ``jobs``. Started by the caller."""
        return Sweeper(self.agent, jobs=[*standard_jobs(notify=self.handlers.tell_recovered), self.expire_approvals,
                                         *jobs])

    async def expire_approvals(self, agent: Agent) -> None:
        """The sweeper's expiry job (``agent/service/expiry.py``), telling Slack through the handlers."""
        await expire_overdue_approvals(agent, self.handlers.tell_expired)

    def expire_now(self) -> int:
        """Expire overdue approvals now, in this thread, telling their threads (``Handlers.expire``)."""
        return self.handlers.expire()

    def close(self) -> None:
        self.dispatch.close()
        self._listeners.shutdown(wait=True)
