"""Per-thread locks across processes, on PostgreSQL (advisory locks) and on SQLite (flock)."""

from __future__ import annotations

import time

from agent.storage.database import Database
from agent.storage.locks import ThreadLocks

HOLDER = """
import sys, time
from pathlib import Path
from agent.storage.database import Database
from agent.storage.locks import ThreadLocks
locks = ThreadLocks.open(Database(sys.argv[1], Path(sys.argv[2])))
with locks.hold(sys.argv[3]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_thread_lock_holds_across_processes_and_dies_with_its_holder(database_url, tmp_path):
    import signal
    import subprocess
    import sys

    locks = ThreadLocks.open(Database(database_url, tmp_path / "state.sqlite"))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database_url, str(tmp_path / "state.sqlite"), "C1:1.2"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with locks.try_hold("C1:1.2") as got:
            assert got is False  # another process runs this thread
        with locks.try_hold("C1:9.9") as got:
            assert got is True  # other threads are free
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while True:  # PostgreSQL notices the closed connection at once; allow it a moment
            with locks.try_hold("C1:1.2") as got:
                if got or time.monotonic() > deadline:
                    break
            time.sleep(0.05)
        assert got is True
        with locks.hold("C1:1.2"):
            pass
    finally:
        holder.kill()
        holder.wait(10)
        locks.close()
