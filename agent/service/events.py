"""Typed progress events: what a front end hears while a request runs.

Front ends (terminal, Slack) react to these, never to node names or raw state keys, so the graph can gain or
rename a node without a front end silently missing a step. ``EventReader`` turns LangGraph's stream (``updates``,
``custom`` and ``checkpoints`` modes) into them; it is the only place that knows which node says what.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.models import ApprovalRecord, Plan, Rejection


@dataclass(frozen=True)
class UrlsFound:
    """The message's URLs after screening: the ones that will be planned and the ones refused (with why)."""

    urls: list[str]
    rejected: list[Rejection]


@dataclass(frozen=True)
class PlanReady:
    """The plan is made; nothing has been sent yet. ``rejected`` repeats what screening refused, for display."""

    plan: Plan
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class ApprovalNeeded:
    """The run stopped to wait for a person's decision (``Agent.decide``)."""

    interrupt_id: str
    request: dict[str, Any]


@dataclass(frozen=True)
class ApprovalDecided:
    """A decision was applied (approved, denied) or the request expired; a refused click is not one."""

    approval: ApprovalRecord


@dataclass(frozen=True)
class Executing:
    """The graph's next step sends purges (a repair pass says so again): a crash from here leaves purges half
    sent."""


@dataclass(frozen=True)
class StepDone:
    """Purges were sent (``purged``) or checked (``verified``) for every planned item."""

    step: Literal["purged", "verified"]


@dataclass(frozen=True)
class Progress:
    """A batch finished: ``done`` of ``total`` in ``phase`` (``purge`` per layer, ``verify`` overall)."""

    phase: str
    done: int
    total: int
    layer: str | None = None


ProgressEvent = UrlsFound | PlanReady | ApprovalNeeded | ApprovalDecided | Executing | StepDone | Progress
EventHandler = Callable[[ProgressEvent], None]

DECIDED = ("approved", "denied", "expired")


class EventReader:
    """Reads one run's stream into typed events. Keeps what screening refused so ``PlanReady`` can show it."""

    def __init__(self) -> None:
        self._rejected: list[Rejection] = []

    def events(self, mode: str, chunk: Any) -> list[ProgressEvent]:
        if mode == "custom":
            return self._custom(chunk)
        if mode == "updates":
            return [event for node, update in chunk.items() for event in self._update(node, update)]
        if mode == "checkpoints":
            return self._checkpoint(chunk)
        return []

    @staticmethod
    def _custom(chunk: Any) -> list[ProgressEvent]:
        if isinstance(chunk, dict) and chunk.get("type") == "progress":
            return [Progress(phase=chunk["phase"], done=chunk["done"], total=chunk["total"],
                             layer=chunk.get("layer"))]
        return []

    def _update(self, node: str, update: Any) -> list[ProgressEvent]:
        if node == "__interrupt__":
            return [ApprovalNeeded(interrupt_id=i.id, request=dict(i.value)) for i in update or ()]
        update = update if isinstance(update, dict) else {}  # nodes write the records themselves (agent/state.py)
        if node == "resolve":
            self._rejected = list(update.get("rejected") or [])
            return [UrlsFound(urls=list(update.get("urls") or []), rejected=self._rejected)]
        if node == "plan" and update.get("plan"):
            return [PlanReady(plan=update["plan"], rejected=self._rejected)]
        approval: ApprovalRecord | None = update.get("approval")
        if node == "approval" and approval is not None and approval.status in DECIDED:
            return [ApprovalDecided(approval=approval)]
        if node == "execute":
            return [StepDone(step="purged")]
        if node == "verify":
            return [StepDone(step="verified")]
        return []

    @staticmethod
    def _checkpoint(chunk: Any) -> list[ProgressEvent]:
        """The graph itself says what runs next (a checkpoint's ``next``): no copy of its routing here."""
        if isinstance(chunk, dict) and "execute" in (chunk.get("next") or ()):
            return [Executing()]
        return []
