"""execute: send every planned purge, all layers in parallel, and record what each layer said.

Layers run at the same time (the run takes as long as the slowest layer, not the sum). An outer cache may
refetch a page from an inner one that was not purged yet; verification finds that, and the graph comes back
here once to purge just those pages again (``repair``). Within a layer the backend batches and rate-limits.
A layer that fails or raises never hides the others' results.

The request's deadline (``limits.deadline_seconds``) starts when the first pass starts and is kept in the state
(``deadline_at``): verification and the repair pass get only what is left of it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Capability, Outcome
from agent.layerset import open_layers
from agent.mapping import prefix_problem
from agent.models import Operation, PlanItem, PurgeOutcome, PurgeStatus
from agent.nodes.common import Progress, request_deadline, stream_writer, thread_id
from agent.state import AgentContext, PurgeState, context_of


async def execute_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    context = context_of(runtime)
    repair = state.get("repair") or []
    items = repair or state["plan"].items
    run_id = f"{thread_id()}:{'repair' if repair else 'first'}"
    deadline_at = request_deadline(state, context) if repair else time.time() + context.config.limits.deadline_seconds
    earlier = [] if repair else list(context.sent_before.get(thread_id()) or [])
    if earlier:  # picked up after a restart: what the layers already took is not sent twice
        done = {(o.layer, o.target) for o in earlier}
        items = [item for item in items if (item.layer, item.target) not in done]
    outcomes = await execute_plan(items, context, stream_writer(), run_id=run_id, deadline_at=deadline_at)
    if repair:
        outcomes = merge_repair(state.get("purge_outcomes", []), outcomes)
    return {"purge_outcomes": earlier + outcomes, "deadline_at": deadline_at}


def merge_repair(first: list[PurgeOutcome], again: list[PurgeOutcome]) -> list[PurgeOutcome]:
    """The second pass replaces the first pass's answer for the targets it redid; attempts add up."""
    redone = {(o.layer, o.target): o for o in again}
    merged = []
    for outcome in first:
        newer = redone.pop((outcome.layer, outcome.target), None)
        if newer is not None:
            outcome = newer.model_copy(update={"attempts": outcome.attempts + newer.attempts, "repaired": True})
        merged.append(outcome)
    return merged + list(redone.values())


async def execute_plan(
    items: list[PlanItem], context: AgentContext, progress: Progress, *, run_id: str | None = None,
    deadline_at: float | None = None,
) -> list[PurgeOutcome]:
    """Send every purge; ``deadline_at`` (``time.time()``) ends the pass, default ``limits.deadline_seconds``
    from now. Each answer batch goes to ``progress`` with what it said (``sent``) as soon as it is back, so the
    audit trail holds it even if a later step fails."""
    # What the plan lists as skipped (a layer that cannot purge a scope, a '*' that is no wildcard) is never sent.
    results = [PurgeOutcome.answer(i.layer, i.operation, i.target, PurgeStatus.SKIPPED, i.skip) for i in items if i.skip]
    targets = unique_targets([item for item in items if not item.skip])
    total = sum(len(t) for t in targets.values())
    done = 0

    def record(layer: str, operation: Operation, outcomes: dict[str, Outcome]) -> None:
        nonlocal done
        sent = [PurgeOutcome.answer(layer, operation, target, outcome.status, outcome.detail, outcome.attempts)
                for target, outcome in outcomes.items()]
        results.extend(sent)
        done += len(outcomes)
        progress({"type": "progress", "phase": "purge", "layer": layer, "done": done, "total": total, "sent": sent})

    limit = context.config.limits.deadline_seconds
    seconds = limit if deadline_at is None else max(0.0, deadline_at - time.time())
    failures: dict[str, str] = {}

    async def purge_guarded(layer: CacheLayer) -> None:
        try:
            await purge_layer(layer, targets, record)
        except Exception as exc:  # a bug between batches must not lose the batches already answered
            failures[layer.name] = f"{layer.name} failed unexpectedly: {type(exc).__name__}: {exc}"

    async with open_layers(context, {item.layer for item in items}) as layers:
        for layer in layers.values():
            layer.run_id = run_id
        try:
            await asyncio.wait_for(asyncio.gather(*(purge_guarded(layer) for layer in layers.values())), seconds)
        except TimeoutError:
            pass  # whatever did not report in time is recorded as failed below
    return fill_missing(targets, results, f"no answer within the request's {limit:g} s deadline "
                                          "(limits.deadline_seconds)", failures)


def unique_targets(items: list[PlanItem]) -> dict[tuple[str, Operation], list[str]]:
    targets: dict[tuple[str, Operation], list[str]] = defaultdict(list)
    for item in items:
        bucket = targets[(item.layer, item.operation)]
        if item.target not in bucket:
            bucket.append(item.target)
    return targets


async def purge_layer(
    layer: CacheLayer,
    targets: dict[tuple[str, Operation], list[str]],
    record: Callable[[str, Operation, dict[str, Outcome]], None],
) -> None:
    for (name, operation), values in targets.items():
        if name != layer.name:
            continue
        step = max(1, layer.items_per_request(operation.value) * layer.config.concurrency)
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            record(layer.name, operation, await run_operation(layer, operation, chunk))


async def run_operation(layer: CacheLayer, operation: Operation, targets: list[str]) -> dict[str, Outcome]:
    try:
        if operation == Operation.PURGE_TAG:
            return await layer.purge_tags(targets)
        if operation == Operation.PURGE_PREFIX:
            return await purge_prefixes(layer, targets)
        if operation == Operation.PURGE_ALL:
            if not layer.supports(Capability.PURGE_ALL):
                return {t: Outcome("skipped", f"{layer.kind} cannot purge everything", 0) for t in targets}
            return {t: await layer.purge_all(t.split()) for t in targets}
        return await layer.purge_urls(targets)
    except Exception as exc:  # a backend bug must not hide the other layers' results
        return {t: Outcome("failed", f"{layer.name} failed unexpectedly: {type(exc).__name__}: {exc}", 0) for t in targets}


async def purge_prefixes(layer: CacheLayer, targets: list[str]) -> dict[str, Outcome]:
    """Prefixes the layer can purge go out; the others are skipped with the planner's reason (never sent as URLs)."""
    skipped = {t: Outcome("skipped", problem, 0) for t in targets if (problem := prefix_problem(layer, t))}
    wanted = [t for t in targets if t not in skipped]
    return {**skipped, **(await layer.purge_prefixes(wanted) if wanted else {})}


def fill_missing(
    targets: dict[tuple[str, Operation], list[str]], results: list[PurgeOutcome], why: str,
    failures: dict[str, str] | None = None,
) -> list[PurgeOutcome]:
    """Every target without an answer is failed: with its layer's error (``failures``), else ``why``."""
    seen = {(r.layer, r.target) for r in results}
    for (layer, operation), values in targets.items():
        for target in values:
            if (layer, target) not in seen:
                results.append(PurgeOutcome.answer(layer, operation, target, PurgeStatus.FAILED,
                                                   (failures or {}).get(layer, why)))
    return results
