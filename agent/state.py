"""The graph's state and the per-run context.

State is checkpointed, so it holds only JSON-friendly values (pydantic models dumped with ``mode="json"``).
The context (config, clock, layer factory) is supplied per invocation and never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypedDict

from agent.config import AppConfig, LayerConfig
from agent.layers import build_layer
from agent.layers.base import CacheLayer


class PurgeState(TypedDict, total=False):
    # the request
    message: str
    user: str
    channel: str | None
    dry_run: bool
    # understanding
    intent: str
    target_sites: list[str]
    # resolution
    urls: list[str]
    rejected: list[dict[str, Any]]
    # plan and approval
    plan: dict[str, Any]
    approval: dict[str, Any]
    # outcomes
    purge_outcomes: list[dict[str, Any]]
    repair: list[dict[str, Any]]  # plan items to purge once more (stale after the first pass)
    results: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    reply: str


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class AgentContext:
    """What nodes need at run time but must not be checkpointed (config holds secrets)."""

    config: AppConfig
    now: Callable[[], datetime] = utc_now
    layer_factory: Callable[[LayerConfig], CacheLayer] = build_layer
    user_groups: Callable[[str], set[str]] = field(default=lambda user: set())
