"""Opening the configured layers for one step of a run, and closing them again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from agent.layers.base import CacheLayer
from agent.state import AgentContext


@asynccontextmanager
async def open_layers(context: AgentContext, names: Iterable[str] | None = None) -> AsyncIterator[dict[str, CacheLayer]]:
    wanted = set(names) if names is not None else {layer.name for layer in context.config.layers}
    layers = {cfg.name: context.layer_factory(cfg) for cfg in context.config.layers if cfg.name in wanted}
    try:
        yield layers
    finally:
        for layer in layers.values():
            await layer.aclose()
