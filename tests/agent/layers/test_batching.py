"""Sending many targets (agent/layers/batching.py): batches, and bounded concurrency that keeps the order."""

from __future__ import annotations

import asyncio

from agent.layers.batching import batches, map_bounded


def test_map_bounded_caps_in_flight_and_keeps_order() -> None:
    in_flight = 0
    peak = 0

    async def work(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return n * 2

    results = asyncio.run(map_bounded(list(range(40)), 3, work))
    assert results == [n * 2 for n in range(40)]
    assert peak == 3


def test_batches() -> None:
    assert batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert batches([], 3) == []
    assert batches([1, 2], 0) == [[1], [2]]
