"""Typed records that cross the agent's edges: what we understood, planned, did and verified.

Graph state holds these models themselves (``agent.state.PurgeState``); checkpoints write them with LangGraph's
msgpack serializer, which revives only the classes ``agent.state.STATE_MODELS`` allows.

Two status words, on purpose: ``PurgeStatus`` is what a layer answered to a purge (``PurgeOutcome``), before anyone
looked; ``ItemStatus`` is the verdict for a page on a layer after verification (``ItemResult``, what every report
shows). ``item_status`` is the one mapping between them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Intent(StrEnum):
    PURGE = "purge"
    PURGE_ALL = "purge_all"
    CHECK = "check"
    HELP = "help"
    HISTORY = "history"  # "what was purged yesterday?" (answered from the audit trail)
    ASK = "ask"  # a question or hypothetical about purging: plan, purge nothing, offer to purge or check
    DRY_RUN = "dry_run"  # "dry run: <url>": plan, purge nothing
    CANCEL = "cancel"  # "never mind" / "wait, cancel that": purge nothing, say so
    UNKNOWN = "unknown"


class Rejection(BaseModel):
    """A piece of the message that looked like a URL but will not be touched, and why."""

    input: str
    reason: str


class DroppedQuery(BaseModel):
    """Query parameters taken off a pasted URL because the site's caches leave them out of their key
    (``sites[].ignore_query_params``): ``url`` is what is purged."""

    url: str
    params: list[str]


class Operation(StrEnum):
    PURGE_URL = "purge_url"
    PURGE_TAG = "purge_tag"
    PURGE_PREFIX = "purge_prefix"  # every page whose URL starts with the target's part before its trailing '*'
    PURGE_ALL = "purge_all"
    DELETE_KEYS = "delete_keys"


# Operations whose reach is a scope (a prefix, a whole site), not a list of pages: how many pages they clear is
# unknown, so they are counted once and the approval rules look at their scope instead.
SCOPE_OPERATIONS = frozenset({Operation.PURGE_PREFIX, Operation.PURGE_ALL})


class PlanItem(BaseModel):
    """One page on one layer. ``reason`` says why the page is in the plan at all."""

    url: str
    site: str
    layer: str
    operation: Operation
    target: str = Field(description="what is sent to the layer: the URL, the tag, or the key pattern")
    reason: str
    requested: bool = Field(description="True when the user named this URL; False for dependent pages")
    clears: int | None = Field(
        default=None, description="a tag purge: how many of the pages looked at carry the tag (what it is known to clear)"
    )
    note: str = Field(default="", description="why this layer purges the page the way it does, when that is not obvious")
    skip: str = Field(default="", description="why this layer is left out for this scope: shown, never sent")

    @property
    def is_scope(self) -> bool:
        """True when the purge reaches a scope (a prefix or a whole site) rather than named pages."""
        return self.operation in SCOPE_OPERATIONS


class Plan(BaseModel):
    items: list[PlanItem] = []
    pages: list[str] = []
    purge_count: int = 0
    needs_approval: bool = False
    approval_reason: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    notes: list[str] = []


ApprovalStatus = Literal["not_needed", "pending", "approved", "denied", "expired"]


class ApprovalRecord(BaseModel):
    status: ApprovalStatus = "not_needed"
    by: str | None = None
    at: datetime | None = None
    refusals: list[str] = []


class PurgeStatus(StrEnum):
    """What a layer answered to one purge, before anyone looked at the page (``PurgeOutcome.status``)."""

    PURGED = "purged"  # the layer accepted the purge
    NOT_CACHED = "not_cached"  # the layer said it held nothing for the target
    SKIPPED = "skipped"  # never sent: the plan or the layer says why
    FAILED = "failed"  # the purge did not go through: refused, an error, or no answer in time


class PurgeOutcome(BaseModel):
    """What one layer said about one purge target (a URL, a tag, a prefix, a key pattern). A record of what was
    said: copied with changes (``model_copy``), never changed in place."""

    model_config = ConfigDict(frozen=True)

    layer: str
    operation: Operation
    target: str
    status: PurgeStatus
    detail: str = ""
    attempts: int = 0
    repaired: bool = Field(default=False, description="the repair pass's answer: the first pass left the page stale")
    seen_fresh: str = Field(default="", description="not sent again after a takeover: what a look found fresh (the "
                                                    "batch may have gone out before the kill; agent/nodes/resend.py)")

    @classmethod
    def answer(cls, layer: str, operation: Operation, target: str, status: PurgeStatus, detail: str = "",
               attempts: int = 0) -> PurgeOutcome:
        """An answer the engine records, from values already typed. Not validated again, and sharing one set of
        field names: pydantic otherwise keeps a set per record, ~700 bytes, and a purge of 5,000 pages on five
        layers records 25,000 answers (bench/purge_throughput.py's peak memory)."""
        return cls.model_construct(_ANSWER_FIELDS, layer=layer, operation=operation, target=target,
                                   status=PurgeStatus(status), detail=detail, attempts=attempts)


# Shared by every PurgeOutcome.answer. Safe only because the model is frozen: pydantic adds to this set when a field
# is assigned, and copies it (model_copy) before changing it.
_ANSWER_FIELDS = {"layer", "operation", "target", "status", "detail", "attempts"}


class ItemStatus(StrEnum):
    """The verdict for one page on one layer after verification (``ItemResult.status``; ``item_status``)."""

    PURGED_VERIFIED = "purged_verified"
    PURGED_UNVERIFIED = "purged_unverified"  # accepted, but nobody could confirm the page is fresh
    NOT_CACHED = "not_cached"  # the layer held nothing, and verification agrees
    SKIPPED = "skipped"
    FAILED = "failed"  # not fresh: the purge failed, or the layer still serves stale content (stale_after_purge)


def item_status(answer: PurgeStatus, fresh: bool | None) -> ItemStatus:
    """The verdict for a page on a layer, from what the layer answered to its purge and what verification saw
    afterwards (``fresh``: True fresh or gone, False still stale, None could not tell or did not look)."""
    if answer == PurgeStatus.SKIPPED:
        return ItemStatus.SKIPPED
    if answer == PurgeStatus.FAILED or fresh is False:
        return ItemStatus.FAILED
    if fresh is None:
        return ItemStatus.PURGED_UNVERIFIED
    return ItemStatus.NOT_CACHED if answer == PurgeStatus.NOT_CACHED else ItemStatus.PURGED_VERIFIED


class ItemResult(BaseModel):
    """The honest outcome for one page on one layer."""

    url: str
    layer: str
    status: ItemStatus
    detail: str = ""
    evidence: str = ""
    attempts: int = 0
    stale_after_purge: bool = Field(
        default=False, description="the layer took the purge but verification found it still serving stale content "
                                   "(status FAILED): the graph purges it once more, the audit counts it as stale"
    )
    origin_status: int | None = Field(
        default=None, description="the HTTP status the origin answered when this page was verified (404/410: a "
                                  "deleted page, 3xx: a redirect, 5xx: the origin itself failing); None: not asked"
    )
    origin_problem: str | None = Field(
        default=None, description="why this page could not be verified through no fault of the purge: the origin "
                                  "itself is 'failing: 502' or 'unreachable (…)'; None: the origin answered usably"
    )


class CheckResult(BaseModel):
    """What a layer is serving for a page right now (the ``check`` intent)."""

    url: str
    layer: str
    cached: bool | None
    fresh: bool | None
    detail: str
    served_version: str | None = Field(
        default=None, description="the Last-Modified of what the layer serves, when it differs from the origin's"
    )
    origin_status: int | None = Field(
        default=None, description="what the origin answered when this was looked at (404/410: a deleted page, 3xx: "
                                  "a redirect); None: not asked or no answer"
    )
    origin_problem: str | None = Field(
        default=None, description="the origin itself is 'failing: 502' or 'unreachable (…)': nothing to compare with"
    )


class RunResult(BaseModel):
    """What ``cachebot ask --json`` prints and what every front end renders."""

    thread_id: str
    intent: Intent
    reply: str
    urls: list[str] = []
    rejected: list[Rejection] = []
    dropped_query: list[DroppedQuery] = Field(
        default=[], description="query parameters dropped from pasted URLs (sites[].ignore_query_params)"
    )
    plan: list[PlanItem] = []
    pages: list[str] = []
    needs_approval: bool = False
    approval_reason: str = Field(default="", description="why the plan needs (or, planned only, would need) approval")
    approval: ApprovalRecord = ApprovalRecord()
    results: list[ItemResult] = []
    checks: list[CheckResult] = []
    dry_run: bool = False
    pending: dict | None = Field(default=None, description="the open approval request, when the run waits")
    notice: str | None = Field(default=None, description="a message for the person who just acted (e.g. refused)")
    understood_by: str = Field(default="rules", description="rules, model, or rules_fallback (the model failed)")
    token_usage: dict | None = Field(default=None, description="the language model's token usage for this request")
    error: str | None = Field(default=None, description="the run stopped with this error; reply says what was sent")
    request_id: str | None = Field(default=None, description="the audit trail's id of this request")
    web_url: str | None = Field(default=None, description="the request's page in the web console (web.base_url)")
