"""Sending many targets: API-sized batches, and a cap on how many are in flight at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(
    items: Sequence[T], concurrency: int | asyncio.Semaphore, fn: Callable[[T], Awaitable[R]]
) -> list[R]:
    """``fn`` over ``items`` with at most ``concurrency`` in flight; results in input order. Given a semaphore
    (a layer's ``slots``), the cap is shared with every other call holding it; ``fn`` must then not wait for
    another call on the same semaphore (it would hold a slot while waiting for one)."""
    semaphore = concurrency if isinstance(concurrency, asyncio.Semaphore) else asyncio.Semaphore(max(1, concurrency))

    async def run(item: T) -> R:
        async with semaphore:
            return await fn(item)

    return list(await asyncio.gather(*(run(item) for item in items)))


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]
