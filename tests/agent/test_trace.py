"""`agent/trace.py`: what one request did, rebuilt from the checkpoints and the audit trail, after a restart, on
SQLite and PostgreSQL (``database_url``), for finished, pending and crashed-then-recovered runs."""

from __future__ import annotations

import re

import pytest

from agent.config import parse_config
from agent.service.agent import Agent
from agent.service.recovery import recover
from agent.state import AgentContext
from agent.trace import draw_trace, load_trace, parse_permalink
from tests.agent.conftest import warm
from tests.agent.nodes.test_verify import racing_layers
from tests.agent.service.test_recovery import Died, die_in_execute, empty_run_tables

PRICING = "https://shop.example/pricing"
MANY = "purge " + " ".join(f"https://shop.example/products/shoes/p{n}" for n in range(30))


@pytest.fixture
def open_agent(fresh_stack, tmp_path, clock, database_url):
    """An Agent on the real stack and the test's database; calling it again is a restart on the same records.
    ``racing=True``: an edge refilled stale by a visitor mid-purge (one repair pass), as in test_verify.py."""
    empty_run_tables(database_url)
    made: list[Agent] = []

    def build(racing: bool = False, **approval) -> Agent:
        data = fresh_stack.config_dict()
        data["approval"] = {**data["approval"], "approvers": ["alice"], **approval}
        data["storage"] = {"sqlite_path": str(tmp_path / "state.sqlite"), "database_url": database_url}
        config = parse_config(data)
        context = AgentContext(config=config, now=clock)
        if racing:
            context.layer_factory = racing_layers
        made.append(Agent(config, context=context))
        return made[-1]

    yield build
    for agent in made:
        agent.close()


def nodes(trace) -> list[str]:
    return [step.node for step in trace.steps]


def test_a_finished_run_shows_each_step_why_it_went_there_and_survives_a_restart(open_agent, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    agent = open_agent(racing=True, threshold=1)
    asked = agent.ask(f"old price on {PRICING}", user="bob", thread_id="t-done")
    agent.decide("t-done", "approve", user="bob")  # self-approval: refused, still pending
    agent.decide("t-done", "approve", user="alice")
    request_id = agent.audit.latest_request("t-done")["id"]
    agent.close()

    restarted = open_agent(racing=True, threshold=1)
    trace = load_trace(restarted.storage, request_id)
    assert (trace.request_id, trace.thread_id, trace.status, trace.attempts) == (request_id, "t-done", "done", 1)
    assert nodes(trace) == ["understand", "resolve", "plan", "approval", "approval", "execute", "verify",
                            "execute", "verify", "report"]
    decisions = [step.decision for step in trace.steps]
    assert decisions[2].startswith("plan → approval: ") and "over the approval threshold of 1" in decisions[2]
    assert decisions[3] == "approval ↺ refused: bob may not approve their own request"
    assert decisions[4] == "approval → execute: approved by alice"
    assert re.fullmatch(r"verify → execute: \d+ pages? still stale on edge after purge, one repair pass", decisions[6])
    assert decisions[9].startswith("report → end: final message: ")
    assert all(step.duration_s is not None and step.duration_s >= 0 for step in trace.steps)
    assert [s.started_at for s in trace.steps] == sorted(s.started_at for s in trace.steps)
    assert trace.edge_counts["execute->verify"] == 2 and trace.edge_counts["verify->execute"] == 1
    assert trace.edge_counts["approval->approval"] == 1 and "resolve->check" not in trace.edge_counts
    assert "check" not in trace.visited and trace.visited[0] == "__start__" and trace.visited[-1] == "__end__"
    assert trace.node_seconds["verify"] == pytest.approx(sum(s.duration_s for s in trace.steps if s.node == "verify"))
    assert trace.waiting_at is None and trace.user == "bob" and PRICING in trace.message
    assert asked.pending  # (it did wait)
    # the same request by thread id and as the newest
    assert load_trace(restarted.storage, "t-done").steps == trace.steps
    assert load_trace(restarted.storage, "last").request_id == request_id


def test_changed_fields_are_summarised_never_dumped(open_agent):
    agent = open_agent(threshold=1000)
    agent.ask(MANY, user="bob", thread_id="t-many", dry_run=True)
    trace = load_trace(agent.storage, "t-many")
    resolve = next(step for step in trace.steps if step.node == "resolve")
    assert resolve.changed["urls"].startswith("30: https://shop.example/products/shoes/p0; ")
    assert resolve.changed["urls"].endswith("; and 27 more")
    plan = next(step for step in trace.steps if step.node == "plan")
    assert plan.decision.startswith("plan → report: plan only (question or dry run)")
    assert re.fullmatch(r"\d+ items on \d+ pages, \d+ purges", plan.changed["plan"])  # dependents added
    assert max(len(summary) for step in trace.steps for summary in step.changed.values()) < 400


def test_a_pending_run_shows_the_approval_it_waits_at(open_agent):
    agent = open_agent(threshold=1)
    agent.ask(f"purge {PRICING}", user="bob", thread_id="t-wait")
    agent.close()
    trace = load_trace(open_agent(threshold=1).storage, "t-wait")
    assert trace.status == "waiting_approval" and trace.waiting_at == "approval"
    assert nodes(trace) == ["understand", "resolve", "plan", "approval"]
    last = trace.steps[-1]
    assert last.outcome == "waiting" and last.duration_s is None
    assert "over the approval threshold of 1" in trace.waiting_for and "alice" in trace.waiting_for
    assert last.decision.startswith("approval ⏸ waiting for approval: ")
    assert "execute" not in trace.visited and "plan->approval" in trace.edge_counts

    drawn = draw_trace(trace, "mermaid")
    assert "class approval waiting" in drawn and "class execute unvisited" in drawn
    assert "class plan visited" in drawn and '-->|"1×"|' in drawn


def test_a_crashed_then_recovered_run_shows_both_attempts(open_agent, fresh_stack):
    warm(fresh_stack, "/pricing", "/")
    first = open_agent()
    with pytest.raises(Died):
        first.ask(f"purge {PRICING}", user="bob", thread_id="t-died", on_event=die_in_execute)
    first.close()

    restarted = open_agent()
    [item] = recover(restarted)
    assert item.outcome == "finished"
    trace = load_trace(restarted.storage, "t-died")
    assert trace.attempts == 2 and trace.status == "done"
    assert nodes(trace) == ["understand", "resolve", "plan", "execute", "execute", "verify", "report"]
    died, again = trace.steps[3], trace.steps[4]
    assert (died.attempt, died.outcome, died.duration_s) == (1, "died", None)
    assert "the process stopped during this step" in died.decision
    assert again.attempt == 2 and again.decision.startswith("execute → verify: ") and again.started_at > died.started_at
    assert [s.attempt for s in trace.steps] == [1, 1, 1, 1, 2, 2, 2]


def test_a_run_whose_process_died_and_was_not_recovered_says_so(open_agent, fresh_stack):
    first = open_agent()
    with pytest.raises(Died):
        first.ask(f"purge {PRICING}", user="bob", thread_id="t-dead", on_event=die_in_execute)
    trace = load_trace(first.storage, "t-dead")
    assert nodes(trace)[-1] == "execute" and trace.steps[-1].duration_s is None
    assert trace.steps[-1].outcome in ("failed", "running")


def test_a_thread_with_two_requests_traces_each_one(open_agent, clock):
    agent = open_agent(threshold=1000)
    agent.ask(f"is {PRICING} stale?", user="bob", thread_id="t-two")
    first = agent.audit.latest_request("t-two")["id"]
    clock.advance(minutes=1)
    agent.ask("help", user="bob", thread_id="t-two")
    assert nodes(load_trace(agent.storage, first))[:3] == ["understand", "resolve", "check"]
    newest = load_trace(agent.storage, "t-two")
    assert nodes(newest) == ["understand", "report"] and newest.request_id != first
    assert "request 2 of 2 on its thread" in newest.notes[0]


def test_a_slack_link_finds_its_thread(open_agent):
    agent = open_agent(threshold=1000)
    agent.ask(f"purge {PRICING}", user="U0BOB", channel="C0WEB", thread_id="C0WEB:1732540000.000100")
    top = load_trace(agent.storage, "https://acme.slack.com/archives/C0WEB/p1732540000000100")
    reply = load_trace(agent.storage, "https://acme.slack.com/archives/C0WEB/p1732540099000200"
                                      "?thread_ts=1732540000.000100&cid=C0WEB")
    assert top.thread_id == reply.thread_id == "C0WEB:1732540000.000100" and top.user == "U0BOB"


def test_an_unknown_request_is_a_clear_lookup_error(open_agent):
    agent = open_agent()
    with pytest.raises(LookupError, match="no request or thread 'nope' is recorded"):
        load_trace(agent.storage, "nope")


def test_permalinks_are_read_as_slack_writes_them():
    assert parse_permalink("https://x.slack.com/archives/C01/p1700000000123456") == "C01:1700000000.123456"
    assert parse_permalink("<https://x.slack.com/archives/C01/p1700000001000000?thread_ts=1700000000.1&cid=C01>") \
        == "C01:1700000000.1"
    assert parse_permalink("C01:1700000000.1") is None


def test_no_configured_secret_reaches_a_trace(make_agent, fresh_stack):
    secret = "s3cr3t-token-value-42"
    data = fresh_stack.config_dict()
    hook = {"name": "hook", "kind": "webhook", "endpoint": "http://127.0.0.1:9", "retries": 0,
            "credentials": {"token": secret},
            "options": {"url_template": "{endpoint}/purge?url={url}",
                        "headers": {"Authorization": "Bearer {credentials.token}"}}}
    agent = make_agent(layers=[*data["layers"], hook],
                       sites=[{**data["sites"][0], "layers": [*data["sites"][0]["layers"], "hook"]}],
                       approval={"threshold": 1, "approvers": ["alice"]})
    asked = agent.ask(f"purge {PRICING} please, token {secret}", user="bob")
    agent.decide(asked.thread_id, "approve", user=f"mallory {secret}")  # refused, with the name in the reason
    trace = load_trace(agent.storage, asked.thread_id)
    assert any(step.decision.startswith("approval ↺ refused: mallory [redacted]") for step in trace.steps)
    assert secret not in trace.model_dump_json()
