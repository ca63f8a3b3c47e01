"""Crash recovery (agent/service/recovery.py) on SQLite and PostgreSQL, with the real cache stack.

A process "dies" mid-execute here by a BaseException thrown from the event callback while the execute node is
sending purges: the stream is abandoned, no checkpoint is written for execute, the ``cachebot_runs`` row stays,
and the thread lock is let go (as a dead process's connection / file would be). The multi-process version with
``kill -9`` is in test_replicas.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import httpx
import pytest

from agent.config import parse_config
from agent.nodes.execute import execute_plan
from agent.service.agent import Agent
from agent.service.events import Executing, Progress, ProgressEvent
from agent.service.recovery import RESTARTED, interrupted_message, recover
from agent.state import AgentContext
from agent.storage.in_flight import FIRST
from agent.storage.runs import EXECUTING
from tests.agent.conftest import Clock, through_edge, warm

BIG = "purge " + " ".join(f"https://shop.example/products/{c}/{p}" for c, p in
                          [("shoes", "runner"), ("shoes", "hiker"), ("hats", "beanie")])
SMALL = "purge https://shop.example/pricing"


class Died(BaseException):
    """Not an Exception: nothing in the agent catches it, as nothing runs after a kill -9."""


def die_in_execute(event: ProgressEvent) -> None:
    if isinstance(event, Progress) and event.phase == "purge":
        raise Died()


def empty_run_tables(database_url: str) -> None:
    """The shared PostgreSQL test database keeps its tables between tests: start without runs or claims."""
    if database_url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as db:
            if db.execute("SELECT to_regclass('cachebot_runs') IS NOT NULL").fetchone()[0]:
                db.execute("DELETE FROM cachebot_runs")
                db.execute("DELETE FROM cachebot_claims")


@pytest.fixture
def agents(fresh_stack, tmp_path, database_url):
    empty_run_tables(database_url)
    made: list[Agent] = []

    def build(config: dict | None = None, **approval) -> Agent:
        data = dict(config) if config is not None else fresh_stack.config_dict()
        data["approval"] = {**data["approval"], "approvers": ["alice"], **approval}
        data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite")}
        config = parse_config(data)
        agent = Agent(config, context=AgentContext(config=config, now=Clock()), database_url=database_url)
        made.append(agent)
        return agent

    yield build
    for agent in made:
        agent.close()


def test_a_run_that_died_in_execute_is_finished_from_its_last_checkpoint(agents, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    first = agents()
    with pytest.raises(Died):
        first.ask(SMALL, user="bob", thread_id="t-died", on_event=die_in_execute)
    [row] = first.runs.all()
    assert row["thread_id"] == "t-died" and row["status"] == EXECUTING and row["interface"] == "cli"
    snapshot = first.snapshot("t-died")
    # the last checkpoint is the plan's: execute is its task (in this simulation the abandoned task may still
    # have finished in the background and saved its writes; after a kill -9 it has none)
    assert [t.name for t in snapshot.tasks] == ["execute"]
    first.close()

    restarted = agents()
    told = []
    [item] = recover(restarted, notify=told.append)
    assert item.outcome == "finished" and told == [item]
    result = item.result
    assert result.results and {r.status.value for r in result.results} == {"purged_verified"}
    assert {(r.url, r.layer) for r in result.results} == {(i.url, i.layer) for i in result.plan}
    assert restarted.runs.all() == []
    assert not restarted.snapshot("t-died").next  # finished
    [entry] = restarted.audit.history()
    assert entry.status == "done" and entry.worked is True and entry.finished_at is not None
    assert recover(restarted) == []  # nothing left; a second recovery is a no-op


def test_a_run_finished_after_a_restart_links_to_its_page_in_the_console_like_any_other(agents, fresh_stack):
    """With ``web.base_url`` set, every report ends with a link to the request's page: a run picked up again
    after a restart too (its answer is built by recovery, not by ``ask``)."""
    warm(fresh_stack, "/pricing", "/")
    config = {**fresh_stack.config_dict(), "web": {"base_url": "https://cachebot.example.com"}}
    first = agents(config)
    with pytest.raises(Died):
        first.ask(SMALL, user="bob", thread_id="t-link", on_event=die_in_execute)
    first.close()

    [item] = recover(agents(config))

    [entry] = agents(config).audit.history()
    assert item.outcome == "finished" and item.result.request_id == entry.request_id
    assert item.result.web_url == f"https://cachebot.example.com/requests/{entry.request_id}"


def test_a_run_that_died_after_approval_is_finished_too(agents):
    agent = agents(threshold=2)
    waiting = agent.ask(BIG, user="bob", thread_id="t-big")
    assert waiting.pending and agent.runs.all() == []  # waiting for approval is not executing
    with pytest.raises(Died):
        agent.decide("t-big", "approve", user="alice", on_event=die_in_execute)
    assert [r["thread_id"] for r in agent.runs.all()] == ["t-big"]
    [item] = recover(agent)
    assert item.outcome == "finished" and item.result.approval.status == "approved"
    assert len(item.result.results) == len(item.result.plan)


def test_without_resume_the_run_is_marked_interrupted_and_its_thread_told(agents):
    agent = agents()
    with pytest.raises(Died):
        agent.ask(SMALL, user="bob", thread_id="t-stop", channel="CWEB", on_event=die_in_execute)
    told = []
    [item] = recover(agent, resume=False, notify=told.append)
    assert item.outcome == "interrupted" and item.interface == "slack" and item.channel == "CWEB"
    assert told == [item] and interrupted_message(item).startswith(RESTARTED)
    [entry] = agent.audit.history()
    assert entry.status == "interrupted" and entry.worked is False
    assert agent.runs.all() == []


def test_a_pending_approval_is_never_decided_by_recovery(agents):
    agent = agents(threshold=2)
    waiting = agent.ask(BIG, user="bob", thread_id="t-wait")
    # as if a process had recorded it executing and died (it cannot, but recovery must still not approve)
    agent.runs.executing("t-wait", request_id=None, interface="cli", channel=None)
    [item] = recover(agent)
    assert item.outcome == "waiting_approval"
    after = agent.result("t-wait")
    assert after.pending and after.pending["interrupt_id"] == waiting.pending["interrupt_id"]
    assert after.approval.status != "approved" and not after.results


def test_a_run_still_going_elsewhere_is_left_alone(agents):
    agent = agents()
    agent.runs.executing("t-live", request_id=None, interface="cli", channel=None)
    held, release = threading.Event(), threading.Event()

    def live_runner() -> None:  # another process's run holds the thread lock
        other = agents()
        with other.locks.hold("t-live"):
            held.set()
            release.wait(30)

    runner = threading.Thread(target=live_runner)
    runner.start()
    assert held.wait(30)
    try:
        [item] = recover(agent)
        assert item.outcome == "busy" and [r["thread_id"] for r in agent.runs.all()] == ["t-live"]
    finally:
        release.set()
        runner.join(30)


def test_a_finished_run_whose_row_was_left_is_just_cleared(agents):
    agent = agents()
    done = agent.ask(SMALL, user="bob", thread_id="t-done")
    assert done.results and agent.runs.all() == []  # a normal run leaves no row
    agent.runs.executing("t-done", request_id=None, interface="cli", channel=None)
    [item] = recover(agent)
    assert item.outcome == "already_done" and agent.runs.all() == []


KILLED_AT_FIRST_ANSWER = """
import os, signal, sys, yaml
from agent.config import parse_config
from agent.nodes.execute import execute_plan
from agent.service.agent import Agent
from agent.service.events import Progress

agent = Agent(parse_config(yaml.safe_load(open(sys.argv[1]))), database_url=sys.argv[2])

def die(event):
    if isinstance(event, Progress) and event.phase == "purge":
        print(event.layer, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9, as soon as the first layer's answer is recorded

agent.ask(sys.argv[3], user="bob", thread_id="t-half", on_event=die)
"""


def test_purges_a_layer_took_before_a_kill_are_not_sent_again(agents, fresh_stack, tmp_path, database_url):
    import subprocess
    import sys
    from collections import Counter
    from pathlib import Path

    import yaml


    from tests.agent.test_replicas import Hook

    warm(fresh_stack, "/pricing", "/")
    hook = Hook()  # a layer that holds its purges: the process is killed in the middle of execute
    hook.gate.clear()
    data = fresh_stack.config_dict()
    data["layers"].append({"name": "hook", "kind": "webhook", "endpoint": hook.url, "timeout_seconds": 60,
                           "retries": 0, "options": {"method": "PURGE", "url_template": "{endpoint}/purge{path}",
                                                     "expected_status": [200]}})
    data["sites"][0]["layers"].append("hook")
    data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    root = Path(__file__).resolve().parents[3]
    try:
        killed = subprocess.run([sys.executable, "-c", KILLED_AT_FIRST_ANSWER, str(tmp_path / "config.yaml"),
                                 database_url, SMALL], cwd=root, capture_output=True, text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr[-2000:]
        layer = killed.stdout.split()[0]  # the layer whose answer was recorded before the kill
        hook.gate.set()
        restarted = agents(config=data)
        [item] = recover(restarted_with_counting(restarted, sent := Counter()))
    finally:
        hook.close()

    assert item.outcome == "finished" and layer != "hook"
    assert sent[layer] == 0 and sent["hook"] > 0  # the hook was sent again; the layer that answered was not
    assert "failed" not in {r.status.value for r in item.result.results}
    # and what it took before the kill is verified all the same
    assert {r.status.value for r in item.result.results if r.layer == layer} <= {"purged_verified", "not_cached"}


def restarted_with_counting(restarted, sent):
    from agent.layers import build_layer

    def counting(config):
        built = build_layer(config)
        for name in ("purge_urls", "purge_tags", "purge_prefixes"):
            send = getattr(built, name)

            async def counted(targets, _send=send, _layer=config.name):
                sent[_layer] += len(targets)
                return await _send(targets)

            setattr(built, name, counted)
        return built

    restarted.context.layer_factory = counting
    return restarted


def die_when_executing(event: ProgressEvent) -> None:
    if isinstance(event, Executing):  # execute is next and has not started: nothing is sent
        raise Died()


def stopped_before_execute(agents, fresh_stack, thread_id: str) -> Agent:
    """Both pages cached, then changed at the origin; a run of SMALL on ``thread_id`` that died with execute
    next: the agent it died in (closed by the caller)."""
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Prices went down")
    fresh_stack.content.edit("/", "A new home page")
    first = agents()
    with pytest.raises(Died):
        first.ask(SMALL, user="bob", thread_id=thread_id, on_event=die_when_executing)
    return first


def as_a_killed_holder_left_it(agent: Agent, thread_id: str, in_flight: dict[str, list[str]],
                               taken: dict[str, list[str]]) -> None:
    """What a holder killed mid-execute leaves: each batch of ``in_flight`` (layer -> pages) noted in the journal
    before it went, the purges of ``taken`` really done on their layer, and no answer in the audit trail."""
    import asyncio

    from agent.layers import build_layer
    from agent.nodes.execute import run_operation

    plan = agent.result(thread_id).plan
    item_of = {(i.layer, i.url): i for i in plan}
    for layer, urls in in_flight.items():
        items = [item_of[(layer, url)] for url in urls]
        agent.purges_in_flight.sending(thread_id, FIRST, layer, items[0].operation.value, [i.target for i in items])

    async def purge(layer_name: str, urls: list[str]) -> None:
        layer = build_layer(agent.config.layer_named(layer_name))
        try:
            for url in urls:
                item = item_of[(layer_name, url)]
                answers = await run_operation(layer, item.operation, [item.target])
                assert {a.status.value for a in answers.values()} <= {"purged", "not_cached"}, answers
        finally:
            await layer.aclose()

    for layer, urls in taken.items():
        asyncio.run(purge(layer, urls))


def counting_targets(agent: Agent, sent: Counter) -> Agent:
    """Every target each layer is asked to purge, counted as (layer, target)."""
    from agent.layers import build_layer

    def counting(config):
        built = build_layer(config)
        for name in ("purge_urls", "purge_tags", "purge_prefixes"):
            send = getattr(built, name)

            async def counted(targets, _send=send, _layer=config.name):
                sent.update((_layer, t) for t in targets)
                return await _send(targets)

            setattr(built, name, counted)
        return built

    agent.context.layer_factory = counting
    return agent


def test_purges_in_flight_at_a_kill_are_looked_at_first_and_only_the_stale_ones_sent_again(agents, fresh_stack):
    pricing, home = "https://shop.example/pricing", "https://shop.example/"
    first = stopped_before_execute(agents, fresh_stack, "t-flight")
    # the killed holder had sent the app cache and Varnish both pages, the edge /pricing; of those the app cache
    # deleted /pricing's keys and Varnish purged both, and then the process died before any answer was recorded
    as_a_killed_holder_left_it(first, "t-flight",
                               in_flight={"appcache": [pricing, home], "varnish": [pricing, home], "edge": [pricing]},
                               taken={"appcache": [pricing], "varnish": [pricing, home]})
    first.close()

    restarted = counting_targets(agents(), sent := Counter())
    [item] = recover(restarted)

    assert item.outcome == "finished"
    plan = {(i.layer, i.url): i.target for i in item.result.plan}
    # fresh where they were: no second purge of those for this decision
    assert sent[("appcache", plan[("appcache", pricing)])] == 0
    assert sent[("varnish", plan[("varnish", pricing)])] == 0
    # Varnish's home page is looked at only once the app cache behind it dropped its stale copy: fresh then too
    assert sent[("varnish", plan[("varnish", home)])] == 0
    # still stale although in flight: sent again, once; never in flight: sent, once
    assert sent[("appcache", plan[("appcache", home)])] == 1
    assert sent[("edge", plan[("edge", pricing)])] == 1
    assert sent[("edge", plan[("edge", home)])] == 1
    assert {r.status.value for r in item.result.results} == {"purged_verified"}
    # and the record says why those were not sent again
    outcomes = {(o.layer, o.target): o for o in restarted.snapshot("t-flight").values["purge_outcomes"]}
    for key in (("appcache", pricing), ("varnish", pricing), ("varnish", home)):
        detail = outcomes[(key[0], plan[key])].detail
        assert "not sent again" in detail and "verified fresh" in detail
    assert "not sent again" not in outcomes[("edge", plan[("edge", pricing)])].detail
    assert through_edge(fresh_stack, "/pricing").text.count("Prices went down") == 1
    assert restarted.purges_in_flight.of("t-flight", FIRST) == []  # the run ended: nothing in flight


def test_a_run_picked_up_in_verify_does_not_purge_again_the_app_cache_its_holder_refilled(agents, fresh_stack):
    first = stopped_before_execute(agents, fresh_stack, "t-verify")
    # the killed holder's execute sent every purge and its answers were saved; then its verify began: it fetched
    # the pages from the origin, which wrote its app cache again, and the process died
    plan = first.result("t-verify").plan
    answers = asyncio.run(execute_plan(plan, first.context, lambda event: None))
    first.graph.update_state({"configurable": {"thread_id": "t-verify"}},
                             {"purge_outcomes": answers, "deadline_at": time.time() + 30}, as_node="execute")
    assert first.snapshot("t-verify").next == ("verify",)
    for path in ("/pricing", "/"):
        httpx.get(fresh_stack.origin_url + path, headers={"Host": fresh_stack.host}, timeout=10)
    first.close()

    restarted = counting_targets(agents(), sent := Counter())
    [item] = recover(restarted)

    assert item.outcome == "finished" and sum(sent.values()) == 0  # nothing purged twice
    assert {r.status.value for r in item.result.results} == {"purged_verified"}
    app = [r for r in item.result.results if r.layer == "appcache"]
    assert app and all("written again since the purge" in r.evidence for r in app)


def test_a_request_killed_before_its_run_saved_anything_is_run_again_not_taken_for_the_thread_s_last_answer(
        agents, fresh_stack):
    """The process died after the request was recorded and its lease said ``running``, before the graph saved
    its first step: the thread's last checkpoint is an earlier request's end (here a "help"). The takeover runs
    this request from what was asked, under the same audit record, instead of answering with that end."""
    warm(fresh_stack, "/pricing", "/")
    first = agents()
    first.ask("help", user="bob", thread_id="C1:1.1", channel="C1")
    asked = {"key": "event:E2", "kind": "answer", "channel": "C1", "thread_ts": "1.1", "message": SMALL,
             "user": "bob"}
    first.accept("C1:1.1", interface="slack", channel="C1", reply_to=asked)

    def killed(*args, **kwargs):
        raise Died()

    first._run_recorded = killed
    with pytest.raises(Died):
        first.ask(SMALL, user="bob", thread_id="C1:1.1", channel="C1",
                  reply_to={"key": "event:E2", "kind": "answer", "channel": "C1", "thread_ts": "1.1"})
    [row] = first.runs.all()
    assert row["status"] == "running" and row["reply_to"]["message"] == SMALL  # what was asked is kept
    first.close()

    restarted = agents()
    told = []
    [item] = recover(restarted, notify=told.append)

    assert item.outcome == "finished" and told == [item]
    assert {r.url for r in item.result.results} >= {"https://shop.example/pricing"}
    assert {r.status.value for r in item.result.results} == {"purged_verified"}
    [entry] = [e for e in restarted.audit.history() if e.thread_id == "C1:1.1"]  # one record for the request
    assert entry.status == "done" and entry.request_id == row["request_id"]
