"""Who may approve what, and when a plan needs approval. Every front end goes through these rules."""

from __future__ import annotations

from datetime import datetime

from agent.config import AppConfig
from agent.models import Intent


def approval_reason(intent: str, purge_count: int, config: AppConfig) -> str:
    """Why this plan needs a second person, or "" when it can run at once."""
    if intent == Intent.PURGE_ALL:
        return "purging everything on a site always needs approval"
    threshold = config.approval.threshold
    if purge_count > threshold:
        return f"{purge_count} purges is over the approval threshold of {threshold}"
    return ""


def approvers_description(config: AppConfig) -> str:
    names = [f"<@{user}>" if user[:1] in "UW" and user.isupper() else user for user in config.approval.approvers]
    names += [f"<!subteam^{group}>" for group in config.approval.approver_groups]
    return ", ".join(names) if names else "nobody (no approvers are configured)"


def refuse_approver(
    approver: str, requester: str, approver_groups: set[str], config: AppConfig, decision: str
) -> str | None:
    """The reason ``approver`` may not make this decision, or None when they may.

    A requester may always withdraw (deny) their own request; approving it needs ``allow_self_approval``.
    """
    rules = config.approval
    if decision == "deny" and approver == requester:
        return None
    if approver == requester and not rules.allow_self_approval:
        return "you asked for this purge, and self-approval is turned off: another approver has to approve it"
    allowed = approver in rules.approvers or bool(approver_groups & set(rules.approver_groups))
    if not allowed:
        return f"you are not an approver for cachebot; ask {approvers_description(config)}"
    return None


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and now >= expires_at
