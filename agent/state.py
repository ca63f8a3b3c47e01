"""The graph's state and the per-run context.

State holds the typed records of ``agent.models`` (a ``Plan``, a list of ``PurgeOutcome``…), not their JSON.
Each such field is a ``ModelValue`` channel: whatever reaches it in JSON form (a checkpoint written before state
was typed, a front end's input, LangGraph Studio) is validated into the model there, once, so nodes never dump
or re-validate. Checkpoints write the models with LangGraph's msgpack serializer; ``checkpoint_serializer`` revives
only ``STATE_MODELS`` (and LangGraph's own safe types), never an arbitrary class named in the stored bytes.

The context (config, clock, layer factory) is supplied per invocation and never stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Annotated, Any, TypedDict

from langgraph.channels import LastValue
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import TypeAdapter

from agent.config import AppConfig, LayerConfig, load_config
from agent.layers import build_layer
from agent.layers.base import CacheLayer
from agent.models import (
    ApprovalRecord,
    CheckResult,
    DroppedQuery,
    ItemResult,
    ItemStatus,
    Operation,
    Plan,
    PlanItem,
    PurgeOutcome,
    PurgeStatus,
    Rejection,
)
from agent.periods import utc_now


@cache
def _adapter(typ: Any) -> TypeAdapter:
    return TypeAdapter(typ)


class ModelValue(LastValue):
    """A state field holding a typed record (or a list of them): the last value written, validated on the way in.

    Model instances pass through as they are; JSON-shaped values (dicts, lists of dicts) become the model. Both a
    node's update and a value read back from a checkpoint go through here, so runs checkpointed before the state
    was typed load as models too."""

    __slots__ = ()

    def from_checkpoint(self, checkpoint: Any) -> ModelValue:
        channel = super().from_checkpoint(checkpoint)
        if channel.is_available():
            channel.value = _adapter(self.typ).validate_python(channel.value)
        return channel

    def update(self, values: Sequence[Any]) -> bool:
        return super().update([_adapter(self.typ).validate_python(value) for value in values])


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
    rejected: Annotated[list[Rejection], ModelValue]
    dropped_query: Annotated[list[DroppedQuery], ModelValue]  # parameters taken off URLs (ignore_query_params)
    # plan and approval (an empty Plan: nothing planned on this request)
    plan: Annotated[Plan, ModelValue]
    approval: Annotated[ApprovalRecord, ModelValue]
    # outcomes
    purge_outcomes: Annotated[list[PurgeOutcome], ModelValue]
    deadline_at: float | None  # time.time() by which purges and verification must be done (set by execute)
    repair: Annotated[list[PlanItem], ModelValue]  # plan items to purge once more (stale after the first pass)
    results: Annotated[list[ItemResult], ModelValue]
    checks: Annotated[list[CheckResult], ModelValue]
    reply: str


# Every per-request field and its value at the start of a request: the one place they are listed. A new message on
# a thread starts a new request, and checkpointed state would otherwise carry the previous request's plan and
# results forward.
REQUEST_DEFAULTS: PurgeState = {
    "intent": "", "scope": "urls", "selected": [], "understood_by": "", "understanding_note": "",
    "token_usage": None, "target_sites": [], "urls": [], "rejected": [], "dropped_query": [], "plan": Plan(),
    "approval": ApprovalRecord(),
    "purge_outcomes": [], "deadline_at": None, "repair": [], "results": [], "checks": [], "reply": "",
    "chosen_intent": None,
}


def new_request(message: str, *, user: str, channel: str | None, dry_run: bool,
                chosen_intent: str | None = None) -> PurgeState:
    """The graph input for a new message on a thread: the message, who sent it, and every other field reset."""
    return {**REQUEST_DEFAULTS, "message": message, "user": user, "channel": channel, "dry_run": dry_run,
            "chosen_intent": chosen_intent}


# Every class a checkpoint may name: the ModelValue records above, the records inside them, and the enums their
# fields hold (msgpack writes an enum as its class and value).
STATE_MODELS = (Rejection, DroppedQuery, Plan, PlanItem, ApprovalRecord, PurgeOutcome, ItemResult, CheckResult)
STATE_ENUMS = (Operation, PurgeStatus, ItemStatus)


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer, reviving only ``STATE_MODELS`` and ``STATE_ENUMS`` besides its own safe types: a
    class named in the stored bytes that is not on the list comes back as plain data (and LangGraph logs it), never
    imported and called; ours are revived without the warning LangGraph gives for classes nobody registered."""
    return JsonPlusSerializer(allowed_msgpack_modules=(*STATE_MODELS, *STATE_ENUMS))


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
    # Per thread: the purges a run picked up again after a restart already had answered (Agent.continue_run); its
    # first execute pass does not send them again.
    sent_before: dict[str, list[Any]] = field(default_factory=dict)
    # Per thread: (pass, {(layer, target)}) a killed holder had in flight with no answer recorded
    # (Agent.continue_run, from the journal of purges in flight): execute looks at them before sending them again.
    maybe_sent: dict[str, tuple[str, set[tuple[str, str]]]] = field(default_factory=dict)
    # Threads whose run was picked up after its holder stopped (Agent.continue_run): verify knows a key store it
    # finds full may have been refilled since by the previous holder's own look.
    taken_over: set[str] = field(default_factory=set)
    # Where execute notes each batch before sending it (``agent.storage.in_flight.PurgeJournal``); Agent sets it.
    purge_journal: Any = None


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
