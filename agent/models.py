"""Typed records that cross the agent's edges: what we understood, planned, did and verified.

Graph state stores these as plain JSON dicts (``model_dump(mode="json")``) so checkpoints never depend on
pickling our classes; the functions that read them validate back into these models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


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


class ItemStatus(StrEnum):
    PURGED_VERIFIED = "purged_verified"
    PURGED_UNVERIFIED = "purged_unverified"
    NOT_CACHED = "not_cached"
    SKIPPED = "skipped"
    FAILED = "failed"


class ItemResult(BaseModel):
    """The honest outcome for one page on one layer."""

    url: str
    layer: str
    status: ItemStatus
    detail: str = ""
    evidence: str = ""
    attempts: int = 0


class CheckResult(BaseModel):
    """What a layer is serving for a page right now (the ``check`` intent)."""

    url: str
    layer: str
    cached: bool | None
    fresh: bool | None
    detail: str


class RunResult(BaseModel):
    """What ``cachebot ask --json`` prints and what every front end renders."""

    thread_id: str
    intent: Intent
    reply: str
    urls: list[str] = []
    rejected: list[Rejection] = []
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
