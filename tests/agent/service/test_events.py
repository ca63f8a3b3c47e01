"""What a front end hears while a request runs: typed events in the order a person sees the work happen."""

from __future__ import annotations

from agent.service.events import (
    ApprovalDecided, ApprovalNeeded, Executing, PlanReady, Progress, StepDone, UrlsFound,
)
from tests.agent.conftest import warm

PRICING = "https://shop.example/pricing"
BIG = "purge " + " ".join(f"<https://shop.example/products/{c}/{p}>" for c, p in
                          [("shoes", "runner"), ("shoes", "hiker"), ("shoes", "loafer"), ("hats", "beanie")])


def kinds(events) -> list[str]:
    """The event types in order, repeated batches of progress folded into one."""
    names = [type(e).__name__ for e in events]
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


def test_a_small_purge_is_found_planned_sent_and_verified_in_that_order(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    agent = make_agent()
    heard: list = []
    result = agent.ask(f"purge <{PRICING}> and <https://elsewhere.example/x>", user="bob", on_event=heard.append)
    assert result.results

    found = next(e for e in heard if isinstance(e, UrlsFound))
    assert found.urls == [PRICING]
    assert [r.input for r in found.rejected] == ["https://elsewhere.example/x"]  # refused, and said why
    plan = next(e for e in heard if isinstance(e, PlanReady))
    assert plan.plan.items and not plan.plan.needs_approval
    assert plan.rejected == found.rejected
    order = kinds(heard)
    assert order.index("UrlsFound") < order.index("PlanReady") < order.index("Executing") \
        < order.index("Progress") < order.index("StepDone")
    assert [e.step for e in heard if isinstance(e, StepDone)][:2] == ["purged", "verified"]
    purge = [e for e in heard if isinstance(e, Progress) and e.phase == "purge"]
    assert purge and all(e.done <= e.total for e in purge) and purge[-1].layer


def test_a_dry_run_plans_and_never_says_executing(fresh_stack, make_agent):
    agent = make_agent()
    heard: list = []
    agent.ask(f"dry run: purge <{PRICING}>", user="bob", on_event=heard.append)
    assert any(isinstance(e, PlanReady) for e in heard)
    assert not any(isinstance(e, (Executing, StepDone, Progress)) for e in heard)
    assert agent.runs.all() == []


def test_a_big_batch_waits_then_the_decision_is_heard_before_the_purges(fresh_stack, make_agent):
    agent = make_agent(approval={"threshold": 2, "approvers": ["alice"]})
    heard: list = []
    waiting = agent.ask(BIG, user="bob", on_event=heard.append)
    needed = [e for e in heard if isinstance(e, ApprovalNeeded)]
    assert len(needed) == 1 and needed[0].interrupt_id == waiting.pending["interrupt_id"]
    assert "over the approval threshold of 2" in needed[0].request["reason"]
    assert not any(isinstance(e, Executing) for e in heard)

    heard.clear()
    agent.decide(waiting.thread_id, "approve", user="alice", on_event=heard.append)
    decided = [e for e in heard if isinstance(e, ApprovalDecided)]
    assert len(decided) == 1 and decided[0].approval.status == "approved" and decided[0].approval.by == "alice"
    order = kinds(heard)
    assert order.index("ApprovalDecided") < order.index("Executing") < order.index("StepDone")


def test_a_refused_click_is_not_a_decision(fresh_stack, make_agent):
    agent = make_agent(approval={"threshold": 2, "approvers": ["alice"]})
    waiting = agent.ask(BIG, user="bob")
    heard: list = []
    result = agent.decide(waiting.thread_id, "approve", user="mallory", on_event=heard.append)
    assert result.pending and result.notice
    assert not any(isinstance(e, (ApprovalDecided, Executing)) for e in heard)
    assert any(isinstance(e, ApprovalNeeded) for e in heard)  # still waiting, and said so again
