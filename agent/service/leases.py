"""The heartbeat of the leases this Agent holds (``agent.storage.runs``).

One daemon thread per Agent refreshes ``heartbeat_at`` of every row it holds every ``beat_seconds`` (a third of
``recovery.lease_seconds``: two missed beats are not yet a dead holder). It beats whatever step the run is at
(a purge pass can take minutes), and while the final message is being posted. A process that dies stops beating,
and a sweeper somewhere takes the row over once the heartbeat is ``lease_seconds`` old.
"""

from __future__ import annotations

import logging
import threading

from agent.storage.runs import RunTracker

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, runs: RunTracker, *, beat_seconds: float):
        self.runs = runs
        self.beat_seconds = beat_seconds
        self._held: dict[str, int] = {}  # thread id → how many times it was (re)held: a beat drops only what it saw
        self._holds = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, thread_id: str) -> None:
        with self._lock:
            self._holds += 1
            self._held[thread_id] = self._holds
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="cachebot-heartbeat", daemon=True)
                self._thread.start()

    def drop(self, thread_id: str) -> None:
        with self._lock:
            self._held.pop(thread_id, None)

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def beat(self) -> None:
        """Beat every lease held; forget those no longer ours (another process adopted or took them over)."""
        with self._lock:
            seen = dict(self._held)
        if not seen:
            return
        kept = self.runs.beat(sorted(seen))
        with self._lock:
            for thread_id, hold in seen.items():
                if thread_id not in kept and self._held.get(thread_id) == hold:
                    del self._held[thread_id]

    def _loop(self) -> None:
        while not self._stop.wait(self.beat_seconds):
            try:
                self.beat()
            except Exception:  # a database hiccup: the next beat tries again (a lease survives several misses)
                log.warning("could not refresh the leases' heartbeat", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
