"""The sweeper's periodic jobs and the leases' heartbeat, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

from sqlalchemy import update

from agent.periods import utc_now
from agent.service.sweeper import Sweeper, prune, standard_jobs
from agent.storage.runs import ACCEPTED, FINISHED, RunTracker
from agent.storage.tables import claims, runs
from tests.agent.service.test_recovery import empty_run_tables


def wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def test_every_job_runs_on_every_sweep_and_one_failing_does_not_stop_the_others(make_agent):
    agent = make_agent()
    counts = {"steady": 0, "broken": 0, "added": 0}

    async def steady(_agent) -> None:
        counts["steady"] += 1

    async def broken(_agent) -> None:
        counts["broken"] += 1
        raise RuntimeError("a bug in a job")

    async def added(_agent) -> None:
        counts["added"] += 1

    sweeper = Sweeper(agent, jobs=[steady, broken], interval=0.05)
    sweeper.add(added)  # what another feature does to run its own job (active expiry, say)
    sweeper.start()
    try:
        wait_until(lambda: min(counts.values()) >= 3, "three sweeps of every job")
    finally:
        sweeper.stop()
    assert counts["broken"] >= 3  # tried again each time


def test_a_slow_job_is_not_started_again_while_it_still_runs(make_agent):
    agent = make_agent()
    running, most, release = [0], [0], threading.Event()

    async def slow(_agent) -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.to_thread(release.wait, 30)
        running[0] -= 1

    sweeper = Sweeper(agent, jobs=[slow], interval=0.02).start()
    try:
        wait_until(lambda: sweeper.sweeps >= 10, "ten sweeps")
    finally:
        release.set()
        sweeper.stop()
    assert most[0] == 1


def test_pruning_drops_old_claims_and_finished_leases_and_keeps_the_rest(make_agent, database_url):
    empty_run_tables(database_url)
    agent = make_agent(recovery={"keep_seconds": 3600})
    store = agent.storage.claims
    for key in ("event:old", "event:recent"):
        assert store.claim(key)
    with store.engine.begin() as db:
        db.execute(update(claims).where(claims.c.key == "event:old").values(claimed_at=time.time() - 7200))
    agent.runs.running("t-old", request_id=None, interface="cli", channel=None)
    agent.runs.finished("t-old")
    agent.runs.running("t-recent", request_id=None, interface="cli", channel=None)
    agent.runs.finished("t-recent")
    agent.runs.accept("t-live", interface="slack", channel="C1", reply_to={"key": "event:x"})
    two_hours_ago = utc_now() - timedelta(hours=2)
    with agent.runs.engine.begin() as db:
        db.execute(update(runs).where(runs.c.thread_id == "t-old").values(finished_at=two_hours_ago))
        db.execute(update(runs).where(runs.c.thread_id == "t-live").values(started_at=two_hours_ago,
                                                                              heartbeat_at=utc_now()))

    asyncio.run(Sweeper(agent, jobs=[prune]).sweep_once())

    assert not store.claimed("event:old") and store.claimed("event:recent")
    assert agent.runs.get("t-old") is None and agent.runs.get("t-recent")["status"] == FINISHED
    assert agent.runs.get("t-live")["status"] == ACCEPTED  # a live lease is never pruned, however old
    assert not store.claim("event:recent")  # a Slack retry within the hour is still recognised


def test_a_holder_beats_only_its_own_leases_and_lets_go_of_one_taken_over(make_agent, database_url):
    empty_run_tables(database_url)
    holder, peer = make_agent(), make_agent()
    holder.accept("t-1", interface="slack", channel="C1", reply_to={"key": "event:1"})
    holder.accept("t-2", interface="slack", channel="C1", reply_to={"key": "event:2"})
    long_ago = utc_now() - timedelta(minutes=5)
    with holder.runs.engine.begin() as db:
        db.execute(update(runs).values(heartbeat_at=long_ago))
    assert {r["thread_id"] for r in peer.runs.stale(older_than=60)} == {"t-1", "t-2"}

    peer.runs.take_over("t-2")  # as a sweeper does, under the thread lock
    holder.heartbeat.beat()

    assert peer.runs.stale(older_than=60) == []  # t-1 beaten by its holder, t-2 by its new one
    assert holder.heartbeat.held() == ["t-1"]
    assert peer.runs.get("t-2")["owner"] == peer.runs.owner and peer.runs.get("t-2")["takeovers"] == 1
    assert RunTracker(holder.runs.engine).beat(["t-1"]) == set()  # another owner's beat touches nothing


def test_the_standard_jobs_take_over_and_prune(make_agent):
    agent = make_agent()
    names = [job.__name__ for job in standard_jobs()]
    assert names == ["take_over_runs", "prune"]
    assert Sweeper(agent, jobs=standard_jobs()).interval == agent.config.recovery.sweep_seconds == 15


def test_taking_a_request_in_claims_it_and_leases_it_together_once(make_agent, database_url):
    empty_run_tables(database_url)
    first, second = make_agent(), make_agent()
    asked = {"key": "event:Ev9", "kind": "answer", "message": "purge https://shop.example/pricing", "user": "UBOB"}
    keys = ["event:Ev9", "message:C1:1.2"]

    assert first.take_in(keys, "C1:1.2", interface="slack", channel="C1", reply_to=asked)
    assert not second.take_in(keys, "C1:1.2", interface="slack", channel="C1", reply_to={**asked, "user": "UEVE"})
    assert not second.take_in(["event:Ev10", "message:C1:1.2"], "C1:1.2", interface="slack", channel="C1",
                              reply_to=asked)  # the same message as the other event type

    lease = first.runs.get("C1:1.2")
    assert lease["status"] == ACCEPTED and lease["owner"] == first.runs.owner and lease["reply_to"] == asked
    assert first.storage.intake_claims.claimed("event:Ev10")  # seen: a redelivery of it is not looked at again
