"""Slack side of crash recovery (the thread is told) and the weekly digest (posted to its channel)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.config import DigestConfig
from agent.service.events import Progress, ProgressEvent
from agent.service.recovery import RESTARTED
from agent.storage.claims import ClaimStore
from slack_app.digest import DigestScheduler, due_key
from slack_app.slack_api import make_client
from tests.slack_app.conftest import CHANNEL, SMALL, new_ts

ROOT = Path(__file__).resolve().parents[2]


class Died(BaseException):
    pass


def die_in_execute(event: ProgressEvent) -> None:
    if isinstance(event, Progress) and event.phase == "purge":
        raise Died()


def test_on_start_a_run_left_mid_purge_is_finished_and_its_thread_told(slack):
    h = slack(approval={"threshold": 20})  # runs at once
    thread_ts = new_ts()
    with pytest.raises(Died):
        h.front.agent.ask(SMALL, user="UBOB", channel=CHANNEL, thread_id=f"{CHANNEL}:{thread_ts}",
                          interface="slack", on_event=die_in_execute)
    h.restart()
    [item] = h.front.recover()
    assert item.outcome == "finished"
    texts = [m["text"] for m in h.thread(thread_ts)]
    assert texts[0].startswith(RESTARTED) and "finished it" in texts[0]
    assert len(h.reports(thread_ts)) == 1


def test_a_run_that_cannot_be_finished_is_reported_interrupted_in_its_thread(slack):
    h = slack(approval={"threshold": 20})  # runs at once
    thread_ts = new_ts()
    with pytest.raises(Died):
        h.front.agent.ask(SMALL, user="UBOB", channel=CHANNEL, thread_id=f"{CHANNEL}:{thread_ts}",
                          interface="slack", on_event=die_in_execute)
    h.restart()
    [item] = h.front.recover(resume=False)
    assert item.outcome == "interrupted"
    [told] = h.thread(thread_ts)
    assert told["text"].startswith(f"{RESTARTED}; it was not finished") and not h.reports(thread_ts)


def test_digest_is_due_once_a_week_at_its_hour_and_posted_by_one_replica(slack, fake_slack, tmp_path):
    h = slack(approval={"threshold": 20})
    h.mention(SMALL)
    digest = DigestConfig(channel="CDIGEST", weekday="mon", hour=9)
    monday_9 = datetime(2026, 11, 30, 9, 5, tzinfo=timezone.utc)
    assert due_key(digest, monday_9) == "digest:CDIGEST:2026-W49"
    assert due_key(digest, monday_9.replace(hour=10)) is None
    assert due_key(digest, datetime(2026, 12, 1, 9, 5, tzinfo=timezone.utc)) is None  # a Tuesday
    claims = ClaimStore.in_file(tmp_path / "digest-claims.sqlite")
    replicas = [DigestScheduler(h.front.agent.audit, make_client("xoxb-t", fake_slack.api_url), digest, claims,
                                clock=lambda: monday_9) for _ in range(2)]
    assert [r.tick() for r in replicas] == [True, False]
    assert replicas[0].tick() is False  # the same week again
    [posted] = fake_slack.calls_to("chat.postMessage", channel="CDIGEST")
    assert "weekly digest" in posted.args["text"] and "/pricing" in posted.args["text"]


def test_digest_config_is_validated():
    with pytest.raises(ValueError):
        DigestConfig(channel="C1", weekday="someday")
    with pytest.raises(ValueError):
        DigestConfig(channel="C1", hour=24)
    assert DigestConfig(channel="C1", weekday="Friday").weekday == "fri"


def test_langgraph_json_serves_the_compiled_graph_for_langgraph_dev():
    spec = json.loads((ROOT / "langgraph.json").read_text())
    assert spec["dependencies"] == ["."]
    assert spec["graphs"] == {"cache_purge": "./agent/graph.py:graph"}
    module_path, _, attribute = spec["graphs"]["cache_purge"].partition(":")
    assert (ROOT / module_path).is_file()
    import importlib

    from langgraph.graph.state import CompiledStateGraph

    module = importlib.import_module(module_path.removeprefix("./").removesuffix(".py").replace("/", "."))
    graph = getattr(module, attribute)
    assert isinstance(graph, CompiledStateGraph) and graph.checkpointer is None  # the platform brings its own
    assert {"understand", "plan", "approval", "execute", "verify", "report"} <= set(graph.get_graph().nodes)
