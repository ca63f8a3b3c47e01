"""Every sentence a person reads from the audit trail: history lines (``describe``), the answer to "what was
purged today?" / "who cleared <url>?" (``answer_history``) and the weekly digest (``digest_text``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.periods import window_in
from agent.storage.audit import AuditStore, HistoryEntry


def describe(entry: HistoryEntry) -> str:
    """One line for people: when, who, from where, what, and whether it worked."""
    when = entry.received_at.strftime("%Y-%m-%d %H:%M UTC")
    where = entry.interface + (f" #{entry.channel}" if entry.channel else "")
    if entry.match is not None:
        what = entry.match.url + ("" if entry.match.requested else f" (added: {entry.match.reason})")
        worked = entry.match.worked
    else:
        first = entry.urls[:2]
        what = ", ".join(first) + (f" and {len(entry.urls) - 2} more" if len(entry.urls) > 2 else "")
        what = what or f"{entry.page_count} pages"
        worked = entry.worked
    verdict = {
        "waiting_approval": "waiting for approval", "denied": "denied", "expired": "approval expired",
        "dry_run": "dry run, nothing sent", "error": "error", "received": "in progress",
    }.get(entry.status) or ("verified fresh" if worked else "NOT confirmed fresh" if worked is False else entry.status)
    approved = f", approved by {entry.approved_by}" if entry.approved_by else ""
    return f"{when} — {entry.user} ({where}): {what} → {verdict}{approved}"


def answer_history(store: AuditStore, message: str, urls: list[str], now: datetime, limit: int = 10) -> str:
    """The graph's answer to "what was purged today?" / "who cleared <url>?"."""
    if urls:
        lines = []
        for url in urls[:5]:
            entries = store.history(url=url, limit=limit)
            if not entries:
                lines.append(f"I have no record of {url} being purged.")
                continue
            lines.append(f"{url} — {len(entries)} request(s), newest first:")
            lines += [f"  • {describe(entry)}" for entry in entries]
        return "\n".join(lines)
    since, until, said = window_in(message, now)
    entries = store.history(since=since, until=until, limit=limit + 1)
    if not entries:
        return f"Nothing was purged {said}."
    shown = entries[:limit]
    more = " (the newest ones; `cachebot history` lists all)" if len(entries) > limit else ""
    lines = [f"Purges {said}{more}:"]
    lines += [f"  • {describe(entry)}" for entry in shown]
    return "\n".join(lines)


def digest_text(figures: dict[str, Any], *, days: float | None = None) -> str:
    """The weekly digest (Slack mrkdwn): volume, top sites/sections/layers, most purged paths, layers most
    often stale, median request → verified. Built from ``AuditStore.stats``."""
    median = figures.get("median_seconds_to_verified")
    period = f"the last {days:g} days" if days else "all time"
    lines = [f"*cachebot weekly digest* — {period}",
             f"{figures['requests']} requests: {figures['verified_requests']} verified fresh, "
             f"{figures['failed_requests']} not confirmed. Median request → verified: "
             + ("n/a" if median is None else f"{median:.1f} s")]

    def listing(title: str, rows: list[str]) -> None:
        lines.append(f"*{title}*")
        lines.extend(f"• {row}" for row in rows[:5]) if rows else lines.append("• none")

    listing("Top sites", [f"{r['site']}: {r['purged']} purges" for r in figures.get("top_sites", [])])
    listing("Top sections", [f"{r['site']} {r['section']}: {r['purged']} requests"
                             for r in figures.get("top_sections", [])])
    listing("Top layers", [f"{r['site']}/{r['layer']}: {r['purged']} purges" for r in figures.get("top_layers", [])])
    listing("Most purged paths", [f"{r['requests']}× {r['site']} {r['path']}" for r in figures.get("most_purged", [])])
    listing("Layers stale most often", [
        f"{r['site']}/{r['layer']}: {r['stale']} stale after purge, {r['failed']} failed, {r['unverified']} unverified"
        for r in figures.get("problem_layers", [])])
    return "\n".join(lines)
