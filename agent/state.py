"""The graph's state and the per-run context.

State is checkpointed, so it holds only JSON-friendly values (pydantic models dumped with ``mode="json"``).
The context (config, clock, layer factory) is supplied per invocation and never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from agent.config import AppConfig, LayerConfig, load_config
from agent.layers import build_layer
from agent.layers.base import CacheLayer
from agent.periods import utc_now


class PurgeState(TypedDict, total=False):
    # the request
    message: str
    user: str
    channel: str | None
    dry_run: bool  # plan only (asked for by the front end, or a question / dry run in the words)
    chosen_intent: str | None  # "purge" / "check" picked from an offer (button, prompt), instead of the words
    # understanding
    intent: str
    target_sites: list[str]
    scope: str  # "urls" (the listed ones) or beyond them: "prefix", "tag", "site" (purge_all-like, needs approval)
    selected: list[int]  # placeholder numbers (URL2 -> 2) the request narrows to; [] = every listed URL
    understood_by: str  # "rules", "model", "rules_fallback"
    understanding_note: str  # the model's short reply, or the fallback note, shown before the report
    token_usage: dict[str, Any] | None  # the model's usage block for this request
    # resolution
    urls: list[str]
    rejected: list[dict[str, Any]]
    # plan and approval
    plan: dict[str, Any]
    approval: dict[str, Any]
    # outcomes
    purge_outcomes: list[dict[str, Any]]
    deadline_at: float | None  # time.time() by which purges and verification must be done (set by execute)
    repair: list[dict[str, Any]]  # plan items to purge once more (stale after the first pass)
    results: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    reply: str


# Every per-request field and its value at the start of a request: the one place they are listed. A new message on
# a thread starts a new request, and checkpointed state would otherwise carry the previous request's plan and
# results forward.
REQUEST_DEFAULTS: PurgeState = {
    "intent": "", "scope": "urls", "selected": [], "understood_by": "", "understanding_note": "",
    "token_usage": None, "target_sites": [], "urls": [], "rejected": [], "plan": {}, "approval": {},
    "purge_outcomes": [], "deadline_at": None, "repair": [], "results": [], "checks": [], "reply": "",
    "chosen_intent": None,
}


def new_request(message: str, *, user: str, channel: str | None, dry_run: bool,
                chosen_intent: str | None = None) -> PurgeState:
    """The graph input for a new message on a thread: the message, who sent it, and every other field reset."""
    return {**REQUEST_DEFAULTS, "message": message, "user": user, "channel": channel, "dry_run": dry_run,
            "chosen_intent": chosen_intent}


@dataclass
class AgentContext:
    """What nodes need at run time but must not be checkpointed (config holds secrets)."""

    config: AppConfig
    now: Callable[[], datetime] = utc_now
    layer_factory: Callable[[LayerConfig], CacheLayer] = build_layer
    user_groups: Callable[[str], set[str]] = field(default=lambda user: set())
    # Overrides how requests are understood (an ``agent.understanding.Understander``); None = from config/env.
    understander: Any = None
    # The audit trail (``agent.storage.audit.AuditStore``) the report node answers "history" questions from; Agent sets it.
    audit: Any = None


_studio_context: AgentContext | None = None


def context_of(runtime: Any) -> AgentContext:
    """The run's context; under `langgraph dev` / LangGraph Studio, where no front end supplies one, it is
    built once from the config file named by $CACHEBOT_CONFIG."""
    global _studio_context
    if runtime.context is not None:
        return runtime.context
    if _studio_context is None:
        _studio_context = AgentContext(config=load_config())
    return _studio_context
