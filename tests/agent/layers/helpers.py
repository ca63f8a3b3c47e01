"""What the layer tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agent.layers.base import CacheLayer

T = TypeVar("T")


def run(layer: CacheLayer, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` on a fresh event loop and close the layer's clients on that loop afterwards."""

    async def main() -> T:
        try:
            return await scenario()
        finally:
            await layer.aclose()

    return asyncio.run(main())
