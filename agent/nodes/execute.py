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
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from langgraph.runtime import Runtime

from agent.layers.base import CacheLayer, Capability, Outcome
from agent.layers.batching import map_bounded
from agent.layerset import open_layers
from agent.mapping import prefix_problem
from agent.models import Operation, PlanItem, PurgeOutcome, PurgeStatus
from agent.nodes.common import Progress, request_deadline, stream_writer, thread_id
from agent.nodes.resend import keys_seen_gone, look_before_resending
from agent.state import AgentContext, PurgeState, context_of
from agent.storage.in_flight import FIRST, REPAIR

log = logging.getLogger(__name__)


async def execute_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    context = context_of(runtime)
    repair = state.get("repair") or []
    items = repair or state["plan"].items
    thread, run_pass = thread_id(), REPAIR if repair else FIRST
    run_id = f"{thread}:{run_pass}"
    deadline_at = request_deadline(state, context) if repair else time.time() + context.config.limits.deadline_seconds
    earlier = [] if repair else list(context.sent_before.get(thread) or [])
    if earlier:  # picked up after a restart: what the layers already took is not sent twice
        done = {(o.layer, o.target) for o in earlier}
        items = [item for item in items if (item.layer, item.target) not in done]
    journal = journal_of(context, thread, run_pass)
    maybe = maybe_sent(context, thread, run_pass)
    if maybe:  # picked up after a kill with batches out whose answers were never recorded: look before resending
        outcomes = await send_what_is_stale(items, maybe, context, stream_writer(), run_id=run_id,
                                            deadline_at=deadline_at, journal=journal)
    else:
        outcomes = await execute_plan(items, context, stream_writer(), run_id=run_id, deadline_at=deadline_at,
                                      journal=journal)
    if repair:
        outcomes = merge_repair(state.get("purge_outcomes", []), outcomes)
    return {"purge_outcomes": earlier + outcomes, "deadline_at": deadline_at}


Journal = Callable[[str, Operation, list[str]], None]


def journal_of(context: AgentContext, thread: str, run_pass: str) -> Journal | None:
    """Where each batch is noted before it goes (``agent.storage.in_flight``), for this thread and pass."""
    store = context.purge_journal
    if store is None or not thread:
        return None
    return lambda layer, operation, targets: store.sending(thread, run_pass, layer, operation.value, targets)


def maybe_sent(context: AgentContext, thread: str, run_pass: str) -> set[tuple[str, str]]:
    """(layer, target) a previous holder of this run had in flight for this pass, with no answer recorded."""
    noted = context.maybe_sent.get(thread)
    return set(noted[1]) if noted and noted[0] == run_pass else set()


async def send_what_is_stale(
    items: list[PlanItem], maybe: set[tuple[str, str]], context: AgentContext, progress: Progress, *,
    run_id: str, deadline_at: float, journal: Journal | None,
) -> list[PurgeOutcome]:
    """Send ``items``; those in ``maybe`` only when a look finds them still stale (``agent/nodes/resend.py``).
    A layer in front of one being purged again is looked at after that purge: a round per layer at most."""
    looking = [i for i in items if not i.skip and (i.layer, i.target) in maybe]
    sending = [i for i in items if i.skip or (i.layer, i.target) not in maybe]
    outcomes: list[PurgeOutcome] = []
    while True:
        looked = await look_before_resending(looking, sending, context, deadline_at=deadline_at)
        for layer, answers in by_layer(looked.done).items():  # into the audit trail, as a layer's answers are
            progress({"type": "progress", "phase": "purge", "layer": layer, "done": len(answers),
                      "total": len(answers), "sent": answers})
        outcomes += looked.done
        batch = sending + looked.resend
        answers = await execute_plan(batch, context, progress, run_id=run_id, deadline_at=deadline_at,
                                     journal=journal) if batch else []
        if looked.later:  # the next look fetches these pages: their key stores are looked at before it refills them
            answers = await keys_seen_gone(answers, batch, {i.url for i in looked.later}, context,
                                           deadline_at=deadline_at)
        outcomes += answers
        if not looked.later:
            return outcomes
        looking, sending = looked.later, []


def by_layer(outcomes: list[PurgeOutcome]) -> dict[str, list[PurgeOutcome]]:
    grouped: dict[str, list[PurgeOutcome]] = defaultdict(list)
    for outcome in outcomes:
        grouped[outcome.layer].append(outcome)
    return grouped


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
    deadline_at: float | None = None, journal: Journal | None = None,
) -> list[PurgeOutcome]:
    """Send every purge; ``deadline_at`` (``time.time()``) ends the pass, default ``limits.deadline_seconds``
    from now. Each batch is noted in ``journal`` before it goes (what a new holder of the run looks at after a
    kill), and its answers go to ``progress`` with what it said (``sent``) as soon as they are back, so the
    audit trail holds them even if a later step fails."""
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
            await purge_layer(layer, targets, record, journal)
        except Exception as exc:  # a bug between batches must not lose the batches already answered
            failures[layer.name] = f"{layer.name} failed unexpectedly: {type(exc).__name__}: {exc}"

    async with open_layers(context, {item.layer for item in items}) as layers:
        variants = {host: site.variants for site in context.config.sites for host in site.hosts if site.variants}
        for layer in layers.values():
            layer.run_id = run_id
            layer.variants = variants  # a layer whose purge drops one variant at a time purges each (nginx)
        try:
            await asyncio.wait_for(asyncio.gather(*(purge_guarded(layer) for layer in layers.values())), seconds)
        except TimeoutError:
            pass  # whatever did not report in time is recorded as failed below
    return fill_missing(targets, results, f"no answer within the request's {limit:g} s deadline "
                                          "(limits.deadline_seconds)", failures)


def unique_targets(items: list[PlanItem]) -> dict[tuple[str, Operation], list[str]]:
    """Each (layer, operation)'s targets once, in plan order. Ordered sets (dict keys), not ``in`` on a list:
    that was quadratic, and took seconds of the run at 5,000 URLs."""
    seen: dict[tuple[str, Operation], dict[str, None]] = defaultdict(dict)
    for item in items:
        seen[(item.layer, item.operation)][item.target] = None
    return {key: list(targets) for key, targets in seen.items()}


# Batches of one layer in flight at once. Each batch fills the layer's concurrency cap (``layer.slots``, shared by
# both); the second one queues behind the first, so the cap stays full while the first one's slowest answers are
# awaited. One batch at a time left the API idle at the end of every batch: Fastly alone took 2.4 s for its
# 1.56 s lower bound with 0.6 s of CPU (bench/purge_throughput.py's 500 URLs, 16 in flight, 50 ms each).
BATCHES_IN_FLIGHT = 2


async def purge_layer(
    layer: CacheLayer,
    targets: dict[tuple[str, Operation], list[str]],
    record: Callable[[str, Operation, dict[str, Outcome]], None],
    journal: Journal | None = None,
) -> None:
    for (name, operation), values in targets.items():
        if name != layer.name:
            continue
        step = max(1, layer.items_per_request(operation.value) * layer.config.concurrency)

        async def send(chunk: list[str], operation: Operation = operation) -> None:
            if journal is not None:
                await note_in_flight(journal, layer.name, operation, chunk)
            record(layer.name, operation, await run_operation(layer, operation, chunk))

        chunks = [values[start : start + step] for start in range(0, len(values), step)]
        await map_bounded(chunks, BATCHES_IN_FLIGHT, send)


async def note_in_flight(journal: Journal, layer: str, operation: Operation, chunk: list[str]) -> None:
    """One durable write per batch, off the event loop (the other layers' batches go on meanwhile). A journal
    that cannot be written does not hold the purge back: the batch goes out, and is sent again after a kill."""
    try:
        await asyncio.to_thread(journal, layer, operation, chunk)
    except Exception:
        log.exception("could not note %d purges for %s before sending them", len(chunk), layer)


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
