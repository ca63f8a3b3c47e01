"""execute's journal of purges in flight (agent/nodes/execute.py): every batch is noted before it goes, once per
batch and not per page, against the real stack; a journal that cannot be written does not hold the purges back."""

from __future__ import annotations

import asyncio

from agent.config import parse_config
from agent.models import Operation, PlanItem
from agent.nodes.execute import execute_plan
from agent.state import AgentContext

PAGES = [f"https://shop.example/products/shoes/p{i}" for i in range(12)]


def plan(layers: list[str]) -> list[PlanItem]:
    return [PlanItem(url=url, site="shop", layer=layer, operation=Operation.PURGE_URL, target=url,
                     reason="requested", requested=True) for layer in layers for url in PAGES]


def context_for(fresh_stack) -> AgentContext:
    data = fresh_stack.config_dict()
    for layer in data["layers"]:
        layer.update(max_batch=2, concurrency=2)  # batches of 4 pages: 3 per layer
    return AgentContext(config=parse_config(data))


def test_each_batch_is_noted_before_it_is_sent_once_per_batch(fresh_stack):
    happened: list[tuple[str, str, tuple[str, ...]]] = []

    def journal(layer: str, operation: Operation, targets: list[str]) -> None:
        happened.append(("noted", layer, tuple(targets)))

    def progress(event: dict) -> None:
        sent = event.get("sent") or []
        if sent:
            happened.append(("answered", event["layer"], tuple(o.target for o in sent)))

    outcomes = asyncio.run(execute_plan(plan(["appcache", "edge"]), context_for(fresh_stack), progress,
                                        journal=journal))

    assert {o.status.value for o in outcomes} <= {"purged", "not_cached"} and len(outcomes) == 24
    noted = [h for h in happened if h[0] == "noted"]
    answered = [h for h in happened if h[0] == "answered"]
    assert len(noted) == 6 and all(len(h[2]) == 4 for h in noted)  # 2 layers × 3 batches, not 24 rows
    for _, layer, targets in answered:  # no answer without its batch noted first
        assert happened.index(("noted", layer, targets)) < happened.index(("answered", layer, targets))


def test_a_journal_that_fails_does_not_hold_the_purges_back(fresh_stack):
    def broken(layer: str, operation: Operation, targets: list[str]) -> None:
        raise OSError("disk full")

    outcomes = asyncio.run(execute_plan(plan(["varnish"]), context_for(fresh_stack), lambda event: None,
                                        journal=broken))
    assert len(outcomes) == 12 and {o.status.value for o in outcomes} <= {"purged", "not_cached"}
