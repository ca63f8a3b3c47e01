"""The Agent: how it drives the graph (each chunk of the stream is handled before the graph goes on), and what
it offers front ends beyond runs (screening a text, the requests waiting for a person)."""

from __future__ import annotations

import asyncio
import time
import uuid

from agent.layers import build_layer
from agent.service.events import Executing, Progress
from agent.storage.runs import EXECUTING
from tests.agent.conftest import warm
from tests.agent.service.test_recovery import agents  # noqa: F401  (a fixture)

PRICING = "https://shop.example/pricing"
PURGES = ("purge_urls", "purge_tags", "purge_prefixes", "purge_all")


def layers_looking_before_each_purge(look, *, slow: str = "", seconds: float = 0.0):
    """A layer factory whose layers call ``look()`` before they send anything; the ``slow`` one first waits."""

    def factory(config):
        layer = build_layer(config)
        for name in PURGES:
            send = getattr(layer, name)

            async def looked(targets, _send=send, _wait=seconds if config.name == slow else 0.0):
                look()
                await asyncio.sleep(_wait)
                return await _send(targets)

            setattr(layer, name, looked)
        return layer

    return factory


def test_a_run_is_recorded_executing_before_its_first_purge_is_sent(fresh_stack, make_agent):
    """Crash recovery relies on it: a process dying at its first purge leaves a ``cachebot_runs`` row. It holds
    however slowly the front end takes the Executing event: the graph waits for it."""
    warm(fresh_stack, "/pricing", "/")
    agent = make_agent()
    handled: list[str] = []
    seen: list[tuple] = []  # (the thread's runs row, the events handled) as each purge went out
    agent.context.layer_factory = layers_looking_before_each_purge(
        lambda: seen.append((agent.runs.get("t-order"), list(handled))))

    def slow_front_end(event) -> None:
        if isinstance(event, Executing):
            time.sleep(0.3)
            handled.append("Executing")

    result = agent.ask(f"purge <{PRICING}>", user="bob", thread_id="t-order", on_event=slow_front_end)

    assert result.results and not result.error
    assert seen and all(row is not None and row["status"] == EXECUTING for row, _ in seen)
    assert all(events == ["Executing"] for _, events in seen)
    assert agent.runs.all() == []  # and cleared when the run ended


def test_a_front_end_failing_mid_purge_stops_the_run_after_the_pass_not_inside_it(fresh_stack, make_agent):
    """Purges half sent help nobody: the pass in flight finishes (its answers are kept with the step) and the
    graph stops before verifying."""
    warm(fresh_stack, "/pricing", "/")
    agent = make_agent()
    # the edge answers last, well after the first layer's answer breaks the front end
    agent.context.layer_factory = layers_looking_before_each_purge(lambda: None, slow="edge", seconds=0.5)

    def failing_front_end(event) -> None:
        if isinstance(event, Progress) and event.phase == "purge":
            raise RuntimeError("the front end broke")

    result = agent.ask(f"purge <{PRICING}>", user="bob", thread_id="t-broke", on_event=failing_front_end)

    assert result.error == "RuntimeError: the front end broke"
    snapshot = agent.snapshot("t-broke")
    [execute] = snapshot.tasks  # the plan's checkpoint is the last: verify never started
    assert execute.name == "execute" and execute.result is not None
    sent = {(o.layer, o.target) for o in execute.result["purge_outcomes"]}
    assert {(i.layer, i.target) for i in result.plan if not i.skip} <= sent  # every purge of the pass
    assert agent.runs.all() == []  # a failed run is not left for recovery


def test_screen_splits_a_message_into_our_urls_and_the_rest_with_why(make_agent):
    agent = make_agent()
    urls, rejected = agent.screen("prices: <https://shop.example/pricing> <https://evil.example/x> "
                                  "<https://shop.example/pricing#top> <http://127.0.0.1/admin>")
    assert urls == ["https://shop.example/pricing"]
    assert [r.input for r in rejected] == ["https://evil.example/x", "http://127.0.0.1/admin"]
    assert all(r.reason for r in rejected)
    assert not agent.audit.dump()["audit_requests"]  # nothing was run or recorded


BIG = "purge " + " ".join(f"https://shop.example/products/shoes/{p}" for p in ("runner", "hiker", "loafer"))


def test_waiting_for_lists_what_a_person_may_approve_until_it_expires(make_agent, clock):
    agent = make_agent(approval={"threshold": 2, "approvers": ["alice", "carol"], "expiry_minutes": 30})
    thread = f"C1:{uuid.uuid4().hex}"  # the PostgreSQL database is shared by the session
    assert agent.ask(BIG, user="alice", channel="C1", thread_id=thread, interface="slack").pending
    assert [r.thread_id for r in agent.waiting_for("carol")] == [thread]
    assert agent.waiting_for("alice") == []  # her own request: self-approval is off
    assert agent.waiting_for("mallory") == []  # not an approver
    assert [e.status for e in agent.requests_of("alice")] == ["waiting_approval"]
    clock.advance(minutes=31)
    assert agent.waiting_for("carol") == []  # expired: nothing to decide any more


# --- taking a request in: its claim and its lease together (#11) ----------------------------------------------

KILLED_TAKING_IN = """
import os, signal, sys, yaml
from agent.config import parse_config
from agent.service.agent import Agent
from agent.storage.runs import RunTracker

agent = Agent(parse_config(yaml.safe_load(open(sys.argv[1]))), database_url=sys.argv[2])

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 once the event is claimed, before its lease is written

RunTracker.accept = die
agent.take_in(["event:EvKILLED", "message:C1:1.5"], "C1:1.5", interface="slack", channel="C1",
              reply_to={"key": "event:EvKILLED", "kind": "answer", "message": "help", "user": "UBOB"})
"""


def test_a_process_killed_between_claiming_an_event_and_leasing_it_does_not_lose_the_request(
        agents, fresh_stack, tmp_path, database_url):
    """Slack sends the event again when it was not acked; that retry must be taken in, since no lease was left
    for a sweeper to answer from. (On SQLite the claims have a file of their own: the event's claim used to be
    committed there before the lease was written in the audit database.)"""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from agent.storage.runs import ACCEPTED

    data = fresh_stack.config_dict()
    data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    agents()  # the schema, as a running replica would have made it
    killed = subprocess.run([sys.executable, "-c", KILLED_TAKING_IN, str(tmp_path / "config.yaml"), database_url],
                            cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]

    peer = agents()
    asked = {"key": "event:EvKILLED", "kind": "answer", "message": "help", "user": "UBOB"}
    assert peer.runs.get("C1:1.5") is None  # nothing a sweeper could answer from …
    assert peer.take_in(["event:EvKILLED", "message:C1:1.5"], "C1:1.5", interface="slack", channel="C1",
                        reply_to=asked)  # … so Slack's retry is taken in
    assert peer.runs.get("C1:1.5")["status"] == ACCEPTED
    assert not peer.take_in(["event:EvKILLED", "message:C1:1.5"], "C1:1.5", interface="slack", channel="C1",
                            reply_to=asked)  # and only once
    assert peer.storage.intake_claims.engine is peer.runs.engine  # with the leases, on SQLite too
    peer.answered("C1:1.5")  # (the shared PostgreSQL database's next tests expect no live lease)
