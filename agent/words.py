"""Every sentence a person reads, in one place: the report for every path through the graph (``compose_reply``,
failures first), what a waiting run says (``waiting_reply``) and a failed one (``failure_reply``), the per-page
words the Slack cards reuse, history lines (``describe``), the answer to "what was purged today?" / "who cleared
<url>?" (``answer_history``) and the weekly digest (``digest_text``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from agent.models import CheckResult, Intent, ItemResult, ItemStatus, Operation, Plan, PlanItem, RunResult
from agent.periods import window_in
from agent.policy import approvers_description
from agent.urls import screen_urls

if TYPE_CHECKING:  # annotations only: the graph's state pulls in LangGraph, the audit store SQLAlchemy, and the
    # terminal's `history` and `--help` read their words from here (see tests/agent/cli/test_startup.py)
    from agent.state import AgentContext, PurgeState
    from agent.storage.audit import AuditStore, HistoryEntry


def as_written(name: str) -> str:
    """How a person or a channel is named at the terminal: as stored. (Slack names them ``<@U…>``, ``<#C…>``.)"""
    return name


def as_channel(channel: str) -> str:
    return f"#{channel}"


def describe(entry: HistoryEntry, who: Callable[[str], str] = as_written,
             place: Callable[[str], str] = as_channel) -> str:
    """One line for people: when, who, from where, what, and whether it worked. ``who`` and ``place`` name a
    person and a channel (``as_written`` at the terminal; Slack mentions in Slack)."""
    when = entry.received_at.strftime("%Y-%m-%d %H:%M UTC")
    where = entry.interface + (f" {place(entry.channel)}" if entry.channel else "")
    if entry.match is not None:
        what = entry.match.url + ("" if entry.match.requested else f" (added: {entry.match.reason})")
        worked = entry.match.worked
    else:
        first = entry.urls[:2]
        what = ", ".join(first) + (f" and {len(entry.urls) - 2} more" if len(entry.urls) > 2 else "")
        what = what or plural(entry.page_count, "page")
        worked = entry.worked
    verdict = {
        "waiting_approval": "waiting for approval", "denied": "denied", "expired": "approval expired",
        "dry_run": "dry run, nothing sent", "error": "error", "received": "in progress",
    }.get(entry.status) or ("verified fresh" if worked else "NOT confirmed fresh" if worked is False else entry.status)
    approved = f", approved by {who(entry.approved_by)}" if entry.approved_by else ""
    denier = next((d.by for d in reversed(entry.decisions) if d.status == "denied"), None)
    if entry.status == "denied" and denier:
        verdict = f"denied by {who(denier)}"
    return f"{when} — {who(entry.user)} ({where}): {what} → {verdict}{approved}"


def undecided_line(entries: list[HistoryEntry]) -> list[str]:
    """Which of the listed requests were denied, and which still wait for approval: said, not left to spot."""
    denied = sum(1 for e in entries if e.status == "denied")
    waiting = sum(1 for e in entries if e.status == "waiting_approval")
    parts = ([f"{plural(denied, 'request')} denied"] if denied else []) + \
        ([f"{plural(waiting, 'request')} still waiting for approval"] if waiting else [])
    return [f"Of these, {' and '.join(parts)}."] if parts else []


def answer_history(store: AuditStore, message: str, urls: list[str], now: datetime, limit: int = 10,
                   who: Callable[[str], str] = as_written, place: Callable[[str], str] = as_channel) -> str:
    """The graph's answer to "what was purged today?" / "who cleared <url>?"."""
    if urls:
        lines = []
        for url in urls[:5]:
            entries = store.history(url=url, limit=limit)
            if not entries:
                lines.append(f"I have no record of {url} being purged.")
                continue
            lines.append(f"{url} — {plural(len(entries), 'request')}, newest first:")
            lines += [f"  • {describe(entry, who, place)}" for entry in entries]
            lines += [f"  {line}" for line in undecided_line(entries)]
        return "\n".join(lines)
    since, until, said = window_in(message, now)
    entries = store.history(since=since, until=until, limit=limit + 1)
    if not entries:
        return f"Nothing was purged {said}."
    shown = entries[:limit]
    more = " (the newest ones; `cachebot history` lists all)" if len(entries) > limit else ""
    lines = [f"Purges {said}{more}:"]
    lines += [f"  • {describe(entry, who, place)}" for entry in shown]
    lines += undecided_line(shown)
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


HELP_TEXT = (
    "I clear cached pages and check that they are really fresh afterwards.\n"
    "• Paste one or more URLs (\"these still show the old price: …\") and I purge every cache layer that holds "
    "them, plus the pages that show them (listings, home page, feeds).\n"
    "• Ask \"is <url> cached?\" or \"why is <url> stale?\" and I look without purging.\n"
    "• Ask \"should I purge <url>?\" or say \"dry run: <url>\" and I show what I would purge, purging nothing.\n"
    "• Big batches and purging a whole site need approval from: {approvers}.\n"
    "Sites I manage: {sites}."
)


def compose_reply(state: PurgeState, context: AgentContext) -> str:
    config = context.config
    intent = state.get("intent")
    if intent == Intent.HELP:
        sites = ", ".join(f"{s.name} ({', '.join(s.hosts)})" for s in config.sites)
        return HELP_TEXT.format(approvers=approvers_description(config), sites=sites)
    if intent == Intent.HISTORY and context.audit is not None:
        return history_reply(state, context)
    if intent in (Intent.UNKNOWN, Intent.HISTORY, Intent.CANCEL):
        return state.get("reply") or "I could not tell what you want. Say 'help' to see what I can do."
    if intent in (Intent.ASK, Intent.DRY_RUN) and state.get("scope") not in (None, "", "urls"):
        return whole_site_answer(config)
    lines = [*dropped_query_lines(state), *rejected_lines(state)]
    if intent == Intent.PURGE_ALL and not state.get("target_sites"):
        names = ", ".join(s.name for s in config.sites)
        return "\n".join([f"Which site should I purge everything on? I manage: {names}.", *lines])
    if not state.get("urls") and intent != Intent.PURGE_ALL:
        head = "I found no URL I can work on." if lines else "Which page? Paste the URL(s) you want me to clear."
        return "\n".join([head, *lines])
    if intent == Intent.CHECK:
        return "\n".join([*check_lines(state), *lines])
    if intent == Intent.ASK:
        return "\n".join([*offer_lines(state), *lines])
    return "\n".join([*purge_lines(state), *lines])


def whole_site_answer(config) -> str:
    names = ", ".join(s.name for s in config.sites)
    return ("Nothing was purged. Purging more than the pages you list (a whole site, every page under a path) "
            "clears every cached page it covers and always needs approval. If that is what you want, ask "
            f"\"purge everything on <site>\" (sites: {names}), or list the pages.")


MAX_LISTED_PAGES = 20


def page_lines(plan: Plan) -> list[str]:
    """The plan's pages, the requested ones first, each dependent page with why it is in the plan."""
    requested = list(dict.fromkeys(i.url for i in plan.items if i.requested))
    added: dict[str, str] = {}
    for item in plan.items:
        if not item.requested and item.url not in requested:
            added.setdefault(item.url, item.reason)
    lines = [f"  • {url}" for url in requested] + [f"  • {url} ({why})" for url, why in added.items()]
    more = [f"  … and {len(lines) - MAX_LISTED_PAGES} more"] if len(lines) > MAX_LISTED_PAGES else []
    return lines[:MAX_LISTED_PAGES] + more


def plan_summary(plan: Plan) -> str:
    layers = list(dict.fromkeys(i.layer for i in plan.items))
    return (f"{plural(plan.purge_count, 'purge')} over {plural(len(plan.pages), 'page')} on "
            f"{plural(len(layers), 'layer')} ({', '.join(layers) or 'none'})")


def offer_lines(state: PurgeState) -> list[str]:
    """A question about purging: what a purge would do, that nothing was purged, and the offer."""
    plan = state.get("plan") or Plan()
    pages = len(plan.pages)
    lines = [f"You asked about purging, so nothing was purged. Purging would send {plan_summary(plan)}:",
             *page_lines(plan)]
    if plan.approval_reason:
        lines.append(f"It would need approval: {plan.approval_reason}.")
    lines.append(f"Purge {'this page' if pages == 1 else f'these {pages} pages'}, or just check {'it' if pages == 1 else 'them'}?")
    return lines


def history_reply(state: PurgeState, context: AgentContext, who: Callable[[str], str] = as_written,
                  place: Callable[[str], str] = as_channel) -> str:
    """"what was purged today?" / "who cleared <url>?": answered from the audit trail."""
    message = state.get("message", "")
    urls, _ = screen_urls(message, context.config)
    return answer_history(context.audit, message, urls, context.now(), who=who, place=place)


def dropped_query_lines(state: PurgeState) -> list[str]:
    """Which query parameters were taken off a pasted URL, so nobody wonders why the plan shows another URL."""
    lines = []
    for dropped in state.get("dropped_query", []):
        names = ", ".join(dropped.params)
        lines.append(f"Dropped {names} from {dropped.url}: the caches keep this page without "
                     f"{'it' if len(dropped.params) == 1 else 'them'} (ignore_query_params).")
    return lines


def rejected_lines(state: PurgeState) -> list[str]:
    rejected = state.get("rejected", [])
    if not rejected:
        return []
    shown = [f"  ✗ {r.input}: {r.reason}" for r in rejected[:20]]
    more = [f"  … and {len(rejected) - 20} more"] if len(rejected) > 20 else []
    return [f"Not touched ({len(rejected)}):", *shown, *more]


def check_lines(state: PurgeState) -> list[str]:
    """The verdict first (one line per page when there are several), then what each layer said."""
    checks = state.get("checks", [])
    urls = state["urls"]
    lines = [check_verdict([c for c in checks if c.url == urls[0]])] if len(urls) == 1 else [
        checks_overview(urls, checks), *(f"  {url}: {check_verdict([c for c in checks if c.url == url])}"
                                        for url in urls)]
    for url in urls:
        lines.append(url)
        lines += [f"  {c.layer}: {c.detail}" for c in checks if c.url == url]
    return lines


APP_CACHE_CAVEAT = "but the origin answers from "  # agent.nodes.check.caveat_app_caches says why it cannot tell


def check_verdict(checks: list[CheckResult]) -> str:
    """One page: "Stale on edge and varnish: …", "Fresh everywhere.", "Gone from every cache: …" (a deleted
    page), "Can't tell: the origin itself is failing: 502." or "Can't tell …: why"."""
    stale = [c for c in checks if c.fresh is False]
    unknown = [c for c in checks if c.fresh is None and c.cached is not False]
    if stale:
        layers = " and ".join(dict.fromkeys(c.layer for c in stale))
        many = len({c.layer for c in stale}) > 1
        code = next((c.origin_status for c in stale if c.origin_status is not None), None)
        if code in DELETED_STATUSES:
            return (f"Stale on {layers}: {'they still serve' if many else 'it still serves'} a page the origin has "
                    f"deleted (HTTP {code} there).")
        if code is not None and 300 <= code < 400:
            return (f"Stale on {layers}: {'they serve' if many else 'it serves'} an old answer; the origin now "
                    f"redirects (HTTP {code}).")
        versions = {c.served_version for c in stale}
        when = f"the version from {http_time(versions.pop())}" if len(versions) == 1 and None not in versions \
            else "an older version"
        pronoun = "they serve" if many else "it serves"
        return f"Stale on {layers}: {pronoun} {when}; the origin serves a newer one."
    if unknown:
        problem = next((c.origin_problem for c in unknown if c.origin_problem), None)
        if problem:
            return f"Can't tell: the origin itself is {problem}."
        caveat = next((c.detail for c in unknown if APP_CACHE_CAVEAT in c.detail), None)
        if caveat:
            return f"Can't tell beyond the app cache: the origin answers from {caveat.split(APP_CACHE_CAVEAT, 1)[1]}."
        first = unknown[0]
        return f"Can't tell on {' and '.join(dict.fromkeys(c.layer for c in unknown))}: {first.detail}."
    if not checks:
        return "Nothing to look at: no cache layer is configured for this page."
    statuses = {c.origin_status for c in checks} - {None}
    if statuses and statuses <= set(DELETED_STATUSES):
        return f"Gone from every cache: the origin answers HTTP {min(statuses)} (a deleted page)."
    if statuses and all(300 <= code < 400 for code in statuses):
        return f"Every cache serves the origin's redirect (HTTP {min(statuses)})."
    return "Fresh everywhere."


def checks_overview(urls: list[str], checks: list[CheckResult]) -> str:
    stale = [u for u in urls if any(c.fresh is False for c in checks if c.url == u)]
    if not stale:
        return "No page is stale anywhere I can look:"
    return f"{plural(len(stale), 'page')} of {len(urls)} {'is' if len(stale) == 1 else 'are'} stale:"


def http_time(value: str) -> str:
    """An HTTP date ("Sun, 29 Nov 2026 12:03:00 GMT") as people read it: "12:03 UTC", with the day if not today."""
    try:
        moment = parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return value
    today = datetime.now(timezone.utc).date()
    return moment.strftime("%H:%M UTC" if moment.date() == today else "%Y-%m-%d %H:%M UTC")


def purge_lines(state: PurgeState) -> list[str]:
    plan = state.get("plan") or Plan()
    approval = state.get("approval")
    status = approval.status if approval else None
    scope = plan_scope_lines(plan.items)
    if state.get("dry_run"):
        lines = [f"Dry run: nothing was purged. The plan: {plan_summary(plan)}:", *page_lines(plan), *scope]
        if plan.approval_reason:
            lines.append(f"A real purge would need approval: {plan.approval_reason}.")
        return lines
    if status == "denied":
        return [denied_line(approval.by)]
    if status == "expired":
        return [expired_line(plan.expires_at)]
    if status == "pending":
        return [f"Waiting for approval: {plan.approval_reason}.", *scope]
    return result_lines(state.get("results", []), plan.items)


def denied_line(by: str | None, who: Callable[[str], str] = as_written) -> str:
    return f"Not purged: {who(by or 'an approver')} denied the request."


def clock_time(moment: datetime | str | None) -> str:
    """A moment as people read it in a reply or on a card: "2026-11-25 12:30 UTC"."""
    if not moment:
        return "—"
    value = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def expired_line(expires_at: datetime | str | None) -> str:
    """The final answer of a request nobody decided on in time."""
    when = f" at {clock_time(expires_at)}" if expires_at else ""
    return (f"Not purged: the approval request expired{when} without a decision — nothing was purged. "
            "Ask again if it is still needed.")


def expired_card_line(expires_at: datetime | str | None) -> str:
    """What the approval card says once it expired (its buttons give way to Request again)."""
    return f"Expired at {clock_time(expires_at)} — nothing was purged."


def expired_notice(requester: str, expires_at: datetime | str | None, who: Callable[[str], str] = as_written) -> str:
    """What the requester is told in the thread when their request expired undecided."""
    return (f"{who(requester)}, nobody approved or denied your request before it expired at "
            f"{clock_time(expires_at)}, so nothing was purged. Press “Request again” on the request to send the "
            "same plan back for approval.")


def asked_again_notice(by: str, approvers: str, expires_at: datetime | str | None,
                       who: Callable[[str], str] = as_written) -> str:
    """Said in the thread when an expired request goes back for a fresh approval."""
    return (f"{who(by)} asked again: the same plan waits for approval by {approvers}. "
            f"It expires at {clock_time(expires_at)}.")


def plan_scope_lines(items: list[PlanItem], limit: int = 20) -> list[str]:
    """What the plan reaches beyond the pages it names (prefixes, whole sites, tags), then how layers deviate
    from the obvious (a tag not used, a layer skipped): the lines every front end shows with a plan."""
    lines = scope_lines(items)
    notes = plan_notes(items)
    if notes:
        lines += ["Notes:", *(f"  • {note}" for note in notes[:limit])]
        lines += [f"  … and {len(notes) - limit} more"] if len(notes) > limit else []
    return lines


def plan_notes(items: list[PlanItem]) -> list[str]:
    """The planner's notes, and why a page is skipped everywhere (a scope's skips are in its scope line)."""
    return list(dict.fromkeys([*(i.note for i in items if i.note), *(i.skip for i in items if i.skip and not i.is_scope)]))


def scope_lines(items: list[PlanItem]) -> list[str]:
    """One line per scope: every page under a prefix, everything on a site, or a tag and what it is known to clear."""
    groups: dict[tuple[Operation, str], list[PlanItem]] = {}
    for item in items:
        if item.is_scope or item.operation == Operation.PURGE_TAG:
            groups.setdefault((item.operation, item.target), []).append(item)
    lines = []
    for (operation, target), members in groups.items():
        doing = list(dict.fromkeys(i.layer for i in members if not i.skip))
        skipped = list(dict.fromkeys(f"{i.layer} ({i.skip})" for i in members if i.skip))
        if operation == Operation.PURGE_PREFIX:
            what = f"every page under {target[:-1]} (a wildcard: how many pages is not known)"
        elif operation == Operation.PURGE_ALL:
            what = f"everything on site {members[0].site} ({', '.join(target.split())})"
        else:
            clears = members[0].clears
            known = f"the {clears} page{'s' if clears != 1 else ''} of this plan that carry it" if clears else "its pages"
            what = f"tag {target}: clears {known}, and any other cached page carrying it"
        line = f"Scope: {what}" + (f" — on {', '.join(doing)}" if doing else "")
        lines.append(line + (f"; skipped on {', '.join(skipped)}" if skipped else ""))
    return lines


ORDER = [ItemStatus.FAILED, ItemStatus.PURGED_UNVERIFIED, ItemStatus.SKIPPED, ItemStatus.PURGED_VERIFIED,
         ItemStatus.NOT_CACHED]


WORDS = {
    ItemStatus.PURGED_VERIFIED: "purged, verified",
    ItemStatus.PURGED_UNVERIFIED: "purged, NOT verified",
    ItemStatus.NOT_CACHED: "not cached (nothing to do)",
    ItemStatus.SKIPPED: "skipped",
    ItemStatus.FAILED: "FAILED",
}


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 page", "2 pages": a count with its noun, never "1 pages"."""
    return f"{count} {word if count == 1 else many or word + 's'}"


BAD = (ItemStatus.FAILED, ItemStatus.PURGED_UNVERIFIED)
DELETED_STATUSES = (404, 410)


def purge_results(results: list[ItemResult], planned_skips: set[tuple[str, str]] = frozenset()
                  ) -> dict[tuple[str, str], ItemResult]:
    """One result per purge as the plan counts them (``agent.mapping.count_purges``): per (page, layer), the
    worst of its rows (a page purged by URL and by tag on one layer is one purge), leaving out what the plan
    itself listed as skipped (never sent, never counted)."""
    worst: dict[tuple[str, str], ItemResult] = {}
    for r in results:
        key = (r.url, r.layer)
        if key in planned_skips and r.status == ItemStatus.SKIPPED:
            continue
        if key not in worst or ORDER.index(r.status) < ORDER.index(worst[key].status):
            worst[key] = r
    return worst


def planned_skips(items: list[PlanItem] | None) -> set[tuple[str, str]]:
    return {(i.url, i.layer) for i in items or [] if i.skip}


def page_kind(rows: list[ItemResult]) -> str:
    """What a page that came out fine is, for people: deleted at the origin, a redirect, or a page."""
    statuses = {getattr(r, "origin_status", None) for r in rows} - {None}
    if statuses and statuses <= set(DELETED_STATUSES):
        return "deleted"
    if statuses and all(300 <= s < 400 for s in statuses):
        return "redirect"
    return "page"


def result_summary(results: list[ItemResult], plan_items: list[PlanItem] | None = None) -> str:
    """The report's first sentence, the same at the terminal and in Slack: every purge done and verified, or
    which pages are NOT fresh and where. It counts purges the way the plan did."""
    purges = purge_results(results, planned_skips(plan_items))
    by_page: dict[str, list[ItemResult]] = {}
    for (url, _), r in purges.items():
        by_page.setdefault(url, []).append(r)
    sent = [r for r in purges.values() if r.status != ItemStatus.SKIPPED]
    skipped = len(purges) - len(sent)
    bad = {url: rows for url, rows in by_page.items() if any(r.status in BAD for r in rows)}
    skip_note = f" {plural(skipped, 'purge')} skipped (see below)." if skipped else ""
    if not bad:
        kinds = Counter(page_kind(rows) for rows in by_page.values())
        if set(kinds) <= {"page"}:
            every = "The purge was" if len(sent) == 1 else f"All {len(sent)} purges"
            return f"{every} done and verified fresh.{skip_note}" if sent else f"Nothing was purged.{skip_note}"
        parts = []
        if kinds["page"]:
            parts.append(f"{plural(kinds['page'], 'page')} verified fresh")
        if kinds["deleted"]:
            parts.append(f"{plural(kinds['deleted'], 'deleted page')} "
                         f"{'is' if kinds['deleted'] == 1 else 'are'} gone from every cache")
        if kinds["redirect"]:
            parts.append(f"{plural(kinds['redirect'], 'redirect')} now served by every cache")
        return f"All {plural(len(sent), 'purge')} done: {'; '.join(parts)}.{skip_note}"
    if origin_failing(results):
        return origin_failing_summary(by_page, bad, sent, skip_note)
    stale = any(r.status == ItemStatus.FAILED for rows in bad.values() for r in rows)
    how = "NOT fresh" if stale else "NOT verified"
    where = [f"{url} on {' and '.join(r.layer for r in rows if r.status in BAD)}" for url, rows in bad.items()]
    if len(bad) == 1:
        url, rows = next(iter(bad.items()))
        head = f"1 page {how} on {' and '.join(r.layer for r in rows if r.status in BAD)}: {url}"
    else:
        head = f"{len(bad)} of {len(by_page)} pages {how}: " + "; ".join(where[:3])
        head += f"; and {len(where) - 3} more" if len(where) > 3 else ""
    good = sum(1 for r in sent if r.status not in BAD)
    return f"{head}. {good} of {plural(len(sent), 'purge')} verified fresh.{skip_note}"


def origin_failing(results: list[ItemResult]) -> bool:
    """Every purge went through, and what is not verified is so only because the origin itself is failing (5xx,
    or no answer): nothing failed on our side or in the caches, but freshness is unknown (the CLI exits 3)."""
    bad = [r for r in results if r.status in BAD]
    return bool(bad) and all(r.status == ItemStatus.PURGED_UNVERIFIED and r.origin_problem for r in bad)


def origin_failing_summary(by_page: dict[str, list[ItemResult]], bad: dict[str, list[ItemResult]],
                           sent: list[ItemResult], skip_note: str) -> str:
    """"All 3 purges done; 1 page NOT verified because the origin itself is failing: 502 (…)." and what to do."""
    problems = "; ".join(dict.fromkeys(r.origin_problem for rows in bad.values() for r in rows if r.origin_problem))
    urls = list(bad)
    shown = ", ".join(urls[:3]) + (f" and {len(urls) - 3} more" if len(urls) > 3 else "")
    fine = len(by_page) - len(bad)
    also = f"{plural(fine, 'page')} verified; " if fine else ""
    return (f"All {plural(len(sent), 'purge')} done; {also}{plural(len(bad), 'page')} NOT verified because the "
            f"origin itself is {problems} ({shown}). Nothing failed on our side, but whether the caches are fresh is "
            f"unknown until the origin answers: ask me to check {'it' if len(bad) == 1 else 'them'} then."
            f"{skip_note}")


def result_lines(results: list[ItemResult], plan_items: list[PlanItem] | None = None) -> list[str]:
    """The summary, then each page (the ones not confirmed fresh first) with what each layer said."""
    by_page: dict[str, list[ItemResult]] = {}  # grouped once: a scan of every result per page was quadratic
    for r in results:
        by_page.setdefault(r.url, []).append(r)
    bad = {r.url for r in results if r.status in BAD}
    lines = [result_summary(results, plan_items)]
    for url in sorted(by_page, key=lambda u: u not in bad):
        lines.append(("✗ " if url in bad else "✓ ") + url)
        for r in sorted(by_page[url], key=lambda r: ORDER.index(r.status)):
            lines.append(f"    {r.layer}: {item_words(r)}")
    return lines


def item_words(result: ItemResult) -> str:
    status = result.status
    if status == ItemStatus.PURGED_VERIFIED:
        return f"{result.detail}, verified {result.evidence}".strip(", ")
    if status == ItemStatus.NOT_CACHED:
        return WORDS[status]
    text = f"{WORDS[status]}: {result.detail}"
    if result.evidence:
        text += f" ({result.evidence})"
    return text


def waiting_reply(request: dict) -> str:
    """What the person is told while a run waits for approval (``request`` is the approval interrupt's value)."""
    return (
        f"This needs approval: {request['reason']}. Approvers: {request['approvers']}. "
        f"The request expires at {request['expires_at']}."
    )


def failure_reply(result: RunResult, *, sent: bool) -> str:
    """What the person is told when a run stopped with an error: what happened, what was sent, what to do."""
    if sent:
        return "\n".join([
            f"Something went wrong on my side after the purges were sent ({result.error}). They are recorded, "
            "but NOT verified: ask me to check the pages before relying on them.",
            stopped_reply(str(result.error), result),
            *result_lines(result.results, result.plan),
        ])
    what = "nothing was purged" if result.plan or result.urls else "nothing was done"
    return f"Something went wrong on my side ({result.error}); {what}. Please try again."


# --- run traces (`cachebot trace`, agent/trace.py) ------------------------------------------------------------

SUMMARY_ITEMS = 3  # a changed list shows its count and this many of its items
SUMMARY_CHARS = 80


def short(text: Any, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def kind_of(value: Any) -> str:
    """A record's class name, whether revived (``Plan``) or read as fields (``agent.storage.history.Record``)."""
    return getattr(value, "record_kind", None) or type(value).__name__


def value_of(value: Any) -> Any:
    """An enum's value, or the value itself (records read back as fields hold the values already)."""
    return value.value if isinstance(value, Enum) else value


def _field(item: Any, name: str) -> Any:
    """A field of a model, a ``Record`` or a dict, or None (fields are in a model's and a Record's ``__dict__``;
    looking there is several times quicker than ``getattr`` with a default, over 15,000 records)."""
    if isinstance(item, dict):
        return item.get(name)
    fields = getattr(item, "__dict__", None)
    return fields.get(name) if fields is not None else None


def _item_words(item: Any) -> str:
    """One record in a few words; records nested in others were stored as plain fields (dicts)."""
    if kind_of(item) == "PlanItem" or (isinstance(item, dict) and {"operation", "reason"} <= item.keys()):
        return f"{_field(item, 'layer')} {value_of(_field(item, 'operation'))} {_field(item, 'target')}"
    layer, target = _field(item, "layer"), _field(item, "target") or _field(item, "url")
    status = _field(item, "status")
    if layer and target:
        return f"{layer} {target}" + (f" {value_of(status)}" if status is not None else "")
    if isinstance(item, dict):
        return short(", ".join(f"{k}={v}" for k, v in list(item.items())[:3]), 40)
    return short(item, 60)


TRACE_RESULT_WORDS = {
    ItemStatus.PURGED_VERIFIED: "verified fresh", ItemStatus.PURGED_UNVERIFIED: "NOT verified",
    ItemStatus.NOT_CACHED: "not cached", ItemStatus.SKIPPED: "skipped", ItemStatus.FAILED: "FAILED",
}


def change_summary(value: Any, name: str = "") -> str:
    """A state field's new value in a line: counts and the first few items, never a wall of JSON."""
    if name == "deadline_at" and isinstance(value, (int, float)):  # time.time(): shown as a time of day
        return "purges and verification due by " + datetime.fromtimestamp(value, timezone.utc).strftime(
            "%H:%M:%S UTC")
    if kind_of(value) == "Plan":
        return (f"{plural(len(value.items), 'item')} on {plural(len(value.pages), 'page')}, "
                f"{plural(value.purge_count, 'purge')}" + (", needs approval" if value.needs_approval else ""))
    if kind_of(value) == "ApprovalRecord":
        by = f" by {value.by}" if value.by else ""
        refused = f", {plural(len(value.refusals), 'refusal')}" if value.refusals else ""
        return f"{value.status}{by}{refused}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        first = "; ".join(_item_words(v) for v in value[:SUMMARY_ITEMS])
        statuses = Counter(str(value_of(status)) for v in value if (status := _field(v, "status")) is not None)
        counts = f" ({', '.join(f'{n} {s}' for s, n in statuses.most_common())})" if statuses else ""
        more = f"; and {len(value) - SUMMARY_ITEMS} more" if len(value) > SUMMARY_ITEMS else ""
        return f"{len(value)}{counts}: {first}{more}"
    if isinstance(value, dict):
        return short(", ".join(f"{k}={v}" for k, v in value.items()) or "empty")
    if value is None or value == "":
        return "(empty)"
    return short(value)


def step_decision(node: str, goes_to: str, changed: dict[str, Any], state: dict[str, Any], *,
                  refused: list[str] = (), decisions: list[Any] = (), waiting: str | None = None,
                  error: Any = None) -> str:
    """What a step decided and why, as a trace shows it: ``plan → approval: 84 purges is over …``.
    ``goes_to`` is the node it routed to, or "waiting" / "died" / "failed" / "running"."""
    if goes_to == "waiting":
        return f"{node} ⏸ waiting for {'approval' if node == 'approval' else 'an answer'}: {waiting}"
    if goes_to == "died":
        return f"{node} ✗ the process stopped during this step (no checkpoint after it); recovery ran it again"
    if goes_to == "running":
        return f"{node} … still running, or its process died (`cachebot recover` finishes such runs)"
    if goes_to == "failed":
        why = short(error, 160) if error is not None else "the run stopped with an error (see the logs)"
        return f"{node} ✗ failed: {why}"
    arrow = "↺" if goes_to == node else "→"
    why = _why(node, goes_to, changed, state, refused, decisions)
    target = "refused" if refused else ("end" if goes_to == "__end__" else goes_to)
    return f"{node} {arrow} {target}" + (f": {why}" if why else "")


def _why(node: str, goes_to: str, changed: dict[str, Any], state: dict[str, Any], refused: list[str],
         decisions: list[Any]) -> str:
    plan = state.get("plan") if kind_of(state.get("plan")) == "Plan" else Plan()
    if node == "understand":
        by = changed.get("understood_by") or state.get("understood_by") or "rules"
        return f"{changed.get('intent') or state.get('intent') or 'unknown'} (understood by {by})"
    if node == "resolve":
        urls, rejected = state.get("urls") or [], state.get("rejected") or []
        rejected_words = f", {plural(len(rejected), 'URL')} rejected" if rejected else ""
        if goes_to == "report" and not urls:
            return f"no URL cachebot manages{rejected_words}"
        return f"{plural(len(urls), 'URL')} to act on{rejected_words}"
    if node == "plan":
        if goes_to == "approval":
            return plan.approval_reason or "needs approval"
        if goes_to == "report":
            return f"plan only (question or dry run): {plural(plan.purge_count, 'purge')} not sent"
        return f"{plural(plan.purge_count, 'purge')}, no approval needed"
    if node == "approval":
        approval = changed.get("approval") or state.get("approval")
        if refused:
            return "; ".join(_refusal_words(r) for r in refused)
        status = getattr(approval, "status", "")
        by = getattr(approval, "by", None)
        return f"{status} by {by}" if by else str(status)
    if node == "execute":
        outcomes = changed.get("purge_outcomes") or []
        counts = Counter(str(value_of(_field(o, "status"))) for o in outcomes)
        repaired = sum(1 for o in outcomes if _field(o, "repaired"))
        what = ", ".join(f"{n} {s}" for s, n in counts.most_common())
        return f"{plural(len(outcomes), 'purge answer')} ({what})" + (f", {repaired} of them a repair pass"
                                                                       if repaired else "")
    if node == "verify":
        results = changed.get("results") or []
        if goes_to == "execute":
            repair = changed.get("repair") or []
            layers = sorted({getattr(i, "layer", "") for i in repair})
            pages = {getattr(i, "url", "") for i in repair}
            return (f"{plural(len(pages), 'page')} still stale on {', '.join(layers)} after purge, "
                    "one repair pass")
        counts = Counter(_field(r, "status") for r in results)
        said = ", ".join(f"{counts[status]} {TRACE_RESULT_WORDS[status]}" for status in ORDER if counts[status])
        return f"{plural(len(results), 'page × layer result')}: {said or 'none'}"
    if node == "check":
        checks = changed.get("checks") or []
        stale = sum(1 for c in checks if getattr(c, "fresh", None) is False)
        return f"{plural(len(checks), 'look')}, {stale} stale"
    if node == "report":
        return f"final message: {short(changed.get('reply') or state.get('reply') or '', 60)}"
    return ""


def _refusal_words(refusal: str) -> str:
    """A stored refusal ("U0BOB: you asked for this purge, and self-approval…") as a trace says it."""
    user, _, why = refusal.partition(": ")
    if why.startswith("you asked for this purge"):
        return f"{user} may not approve their own request"
    if why.startswith("you are not an approver"):
        return f"{user} is not an approver"
    return short(refusal, 160)


def took_words(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


TRACE_STATUS = {
    "done": "finished", "answered": "finished (answered)", "dry_run": "finished (dry run, nothing sent)",
    "waiting_approval": "waiting for approval", "denied": "denied", "expired": "approval expired",
    "error": "stopped with an error", "interrupted": "interrupted by a restart, not finished",
    "received": "running (or its process died)", "unknown": "no audit record",
}


def trace_text(trace: Any, changes: bool = True) -> str:
    """A run trace (``agent.trace.RunTrace``) for a person at a terminal: who asked what, then every step in order
    with its start, duration and decision, the fields it changed, and what the run waits at."""
    attempts = f", {trace.attempts} attempts (picked up again after a crash)" if trace.attempts > 1 else ""
    lines = [f"Request {trace.request_id or '(no audit record)'} on thread {trace.thread_id}: "
             f"{TRACE_STATUS.get(trace.status, trace.status)}{attempts}"]
    if trace.user or trace.message:
        when = trace.received_at.strftime("%Y-%m-%d %H:%M:%S UTC") if trace.received_at else ""
        lines.append(f"  {trace.user} asked{' at ' + when if when else ''}: {short(trace.message, 100)}")
    lines += [f"  note: {note}" for note in trace.notes]
    lines.append("")
    for number, step in enumerate(trace.steps, 1):
        attempt = f"[attempt {step.attempt}] " if trace.attempts > 1 else ""
        lines.append(f"{number:>3}. {step.started_at.strftime('%H:%M:%S.%f')[:-3]}  {took_words(step.duration_s):>8}  "
                     f"{attempt}{step.decision}")
        if changes:
            lines += [f"{'':>25}{name}: {summary}" for name, summary in step.changed.items()]
    if trace.waiting_at:
        lines += ["", f"Waiting at {trace.waiting_at}: {trace.waiting_for}"]
    if trace.node_seconds:
        spent = ", ".join(f"{node} {took_words(s)}" for node, s in
                          sorted(trace.node_seconds.items(), key=lambda kv: -kv[1]))
        lines += ["", f"Time per step: {spent}"]
    return "\n".join(lines)


# --- a request picked up again by another process (agent/service/recovery.py) -------------------------------

RESTARTED = "Picked up again after a restart"
MAX_STOPPED_URLS = 5


def _some(urls: list[str]) -> str:
    if not urls:
        return "nothing"
    shown = ", ".join(urls[:MAX_STOPPED_URLS])
    return shown + (f" and {len(urls) - MAX_STOPPED_URLS} more" if len(urls) > MAX_STOPPED_URLS else "")


def stopped_reply(why: str, result: RunResult | None) -> str:
    """What a request that could not finish says: "Stopped: <why>; purged so far: …; not purged: …"."""
    purged: list[str] = []
    missing: list[str] = []
    if result is not None and result.results:
        # one pass: scanning every result for each page was quadratic (a stopped 5,000-URL run has 15,000)
        settled = (ItemStatus.PURGED_VERIFIED, ItemStatus.PURGED_UNVERIFIED, ItemStatus.NOT_CACHED, ItemStatus.SKIPPED)
        open_pages = {r.url for r in result.results if r.status not in settled}
        for url in dict.fromkeys(r.url for r in result.results):
            (missing if url in open_pages else purged).append(url)
    elif result is not None:
        missing = list(dict.fromkeys([i.url for i in result.plan] or result.urls))
    return f"Stopped: {why}; purged so far: {_some(purged)}; not purged: {_some(missing)}."


def taken_over_finished() -> str:
    return (f"{RESTARTED}: cachebot stopped while working on this request; I carried on from where it stopped and "
            "finished it. The answer follows.")


def taken_over_stopped(result: RunResult | None, why: str) -> str:
    return (f"{RESTARTED}; it was not finished. {stopped_reply(why, result)} "
            "Some caches may still be stale: please check the pages, or ask again.")


def taken_over_waiting(decided_by: str | None, who: Callable[[str], str] = as_written) -> str:
    """A decision was being applied when its process stopped: it did not land, the request still waits."""
    if decided_by:
        return (f"{RESTARTED}: the decision by {who(decided_by)} did not land before cachebot stopped, so this "
                "request is still waiting. Click Approve or Deny again.")
    return f"{RESTARTED}: this request is waiting for approval."


# --- the web console (cachebot web, agent/web/) ---------------------------------------------------------------

DETAILS_LINK = "What this request did, step by step"


def details_line(url: str) -> str:
    """The line a report ends with when the console's address is configured (``web.base_url``)."""
    return f"{DETAILS_LINK}: {url}"


def web_needs_token(host: str) -> str:
    """Why ``cachebot web --host`` on another address than loopback refuses to start without a token."""
    return (f"Refusing to serve the console on {host} without a token: anyone who can reach that address would read "
            "every request. Pass --token or set CACHEBOT_WEB_TOKEN (or serve on 127.0.0.1, the default).")


def web_listening(url: str, token: bool) -> str:
    return f"cachebot console on {url}" + (" (token required: open it once with ?token=…)" if token else "")
