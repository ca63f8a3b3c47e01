"""Who may approve what, and when a plan needs approval. Every front end goes through these rules."""

from __future__ import annotations

from datetime import datetime

from collections.abc import Sequence

from agent.config import AppConfig
from agent.mapping import is_broad, prefix_depth
from agent.models import Intent, Operation, PlanItem


def approval_reason(intent: str, purge_count: int, config: AppConfig, items: Sequence[PlanItem] = ()) -> str:
    """Why this plan needs a second person, or "" when it can run at once. Every reason found is given."""
    reasons = []
    if intent == Intent.PURGE_ALL or any(item.operation == Operation.PURGE_ALL for item in items):
        reasons.append("purging everything on a site always needs approval")
    reasons += wildcard_reasons(items, config)
    reasons += broad_tag_reasons(items, config)
    threshold = config.approval.threshold
    if purge_count > threshold:
        reasons.append(f"{purge_count} purges is over the approval threshold of {threshold}")
    return "; ".join(reasons)


def wildcard_reasons(items: Sequence[PlanItem], config: AppConfig) -> list[str]:
    """A prefix purge clears pages nobody listed: it needs approval unless its prefix is at least
    ``approval.prefix_min_depth`` whole path segments deep (unset: every wildcard needs approval)."""
    least = config.approval.prefix_min_depth
    wide = [target for target in dict.fromkeys(i.target for i in items if i.operation == Operation.PURGE_PREFIX)
            if least is None or prefix_depth(target) < least]
    if not wide:
        return []
    shown = ", ".join(wide[:3]) + (f" and {len(wide) - 3} more" if len(wide) > 3 else "")
    rule = ("every wildcard purge needs approval" if least is None
            else f"a wildcard shallower than {least} path segments needs approval (approval.prefix_min_depth)")
    return [f"{shown} clear{'s' if len(wide) == 1 else ''} every page under a prefix, and {rule}"]


def broad_tag_reasons(items: Sequence[PlanItem], config: AppConfig) -> list[str]:
    """The planner never picks a broad tag to purge a page; should one be planned anyway, a person decides."""
    broad = []
    for item in items:
        site = config.site_named(item.site)
        if item.operation != Operation.PURGE_TAG or site is None:
            continue
        if is_broad(item.target, site) or (item.clears or 0) > site.broad_tag_pages:
            broad.append(item.target)
    broad = list(dict.fromkeys(broad))
    if not broad:
        return []
    return [f"tag{'s' if len(broad) > 1 else ''} {', '.join(broad[:3])} clear{'' if len(broad) > 1 else 's'} "
            "many pages (broad_tags / broad_tag_pages)"]


def approvers_description(config: AppConfig) -> str:
    names = [f"<@{user}>" if user[:1] in "UW" and user.isupper() else user for user in config.approval.approvers]
    names += [f"<!subteam^{group}>" for group in config.approval.approver_groups]
    return ", ".join(names) if names else "nobody (no approvers are configured)"


def approval_recipients(config: AppConfig, *, asked_in: str | None = None) -> list[str]:
    """Where an approval request is copied besides its own thread: ``approval.channel`` (unless it was asked
    there), then each approver by direct message when ``approval.dm_approvers`` (user ids; names are skipped).
    Who may decide does not change: that is ``refuse_approver``'s, wherever the click comes from."""
    places = [config.approval.channel] if config.approval.channel and config.approval.channel != asked_in else []
    if config.approval.dm_approvers:
        places += [user for user in config.approval.approvers if user[:1] in "UW" and user.isupper()]
    return list(dict.fromkeys(places))


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


def refuse_request_again(user: str, requester: str, user_groups: set[str], config: AppConfig) -> str | None:
    """The reason ``user`` may not send an expired request back for a fresh approval, or None when they may:
    the person who asked, or anyone who may approve. Sending it back purges nothing; approving it still takes
    an approver (``refuse_approver``), so this is only about who may put it in front of the approvers again."""
    rules = config.approval
    if user and user == requester:
        return None
    if user in rules.approvers or bool(user_groups & set(rules.approver_groups)):
        return None
    return f"only the person who asked for it or an approver may ask again; ask {approvers_description(config)}"


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and now >= expires_at
