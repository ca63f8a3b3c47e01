"""Block Kit builders: every message cachebot posts to Slack is shaped here, nowhere else.

Pure functions from the agent's records (``RunResult``, ``PlanItem``, ``ItemResult``) to Slack JSON. They decide
nothing: who may approve, what needs approval and what the outcome means all come from ``agent/``.
Anything that came from a user (URLs, rejected input, reasons quoting it, report details, the model's sentence)
goes through ``neutralise`` before it reaches mrkdwn: message text is data, never markup. Every mrkdwn text object
is ``verbatim``, so Slack does not turn bare URLs in it into links either.
Slack limits: 50 blocks per message, 3,000 characters per section text; a report that does not fit is cut
down to a summary and the full table goes out as a CSV file.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent.mapping import count_purges
from agent.models import Intent, ItemResult, PlanItem, Rejection, RunResult
from agent.storage.audit import HistoryEntry
from agent.words import (BAD, DETAILS_LINK, ORDER, expired_card_line, item_words, plan_notes, plural, result_summary,
                         scope_lines)

APPROVE_ACTION = "cachebot_approve"
DENY_ACTION = "cachebot_deny"
ACTION_IDS = (APPROVE_ACTION, DENY_ACTION)
APPROVAL_BLOCK_ID = "cachebot_approval"
OFFER_PURGE_ACTION = "cachebot_offer_purge"  # after a question about purging: "Purge these N pages"
OFFER_CHECK_ACTION = "cachebot_offer_check"  # … or "Just check them"
OFFER_ACTION_IDS = (OFFER_PURGE_ACTION, OFFER_CHECK_ACTION)
OFFER_BLOCK_ID = "cachebot_offer"
REQUEST_AGAIN_ACTION = "cachebot_request_again"  # on an expired card: the same plan back for approval
AGAIN_ACTION_IDS = (REQUEST_AGAIN_ACTION,)
EXPIRED_BLOCK_ID = "cachebot_expired"
REPORT_BLOCK_ID = "cachebot_report"  # the report's summary: how a report is told from other messages
FINISHED_EVENT = "cachebot_request_finished"  # message metadata: this message ends the request it names
NOTICE_EVENT = "cachebot_request_notice"  # message metadata: said on the way (the final message follows)
CLEAR_LINKS_SHORTCUT = "cachebot_clear_links"  # the message shortcut's callback id (manifest.yml)
CLEAR_LINKS_VIEW = "cachebot_clear_links_modal"  # the modal it opens
LINKS_BLOCK = "cachebot_links_"  # + n: one checkboxes input per 10 links
LINKS_ACTION = "cachebot_links"

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_OPTIONS = 10  # options in one checkboxes element
MAX_OPTION_CHARS = 75  # an option's plain text
MAX_METADATA_CHARS = 3000  # a view's private_metadata
MAX_TEXT_CHARS = 3500  # the notification/fallback text; Slack truncates long top-level text anyway
REPORT_PAGE_SECTIONS = 40  # page sections in a report message before the rest goes to the CSV

Block = dict[str, Any]


# --- primitives --------------------------------------------------------------------------------------------

def escape(text: str) -> str:
    """Slack's control characters, so text cannot become a mention, a link or a broadcast. For our own words that
    use formatting on purpose; anything a user could have written goes through ``neutralise``."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# mrkdwn has no escape for its formatting characters; these look-alikes read the same and never format.
LOOKALIKES = str.maketrans({"`": "\N{MODIFIER LETTER GRAVE ACCENT}", "*": "\N{ASTERISK OPERATOR}",
                           "_": "\N{MODIFIER LETTER LOW MACRON}", "~": "\N{TILDE OPERATOR}"})


def neutralise(text: object, *, in_code: bool = False) -> str:
    """The one way user-supplied text enters mrkdwn. ``&``, ``<``, ``>`` are escaped (no mention, link or
    broadcast); a backtick becomes a look-alike (nothing can close a code span and break out of it); outside a
    code span ``*``, ``_`` and ``~`` become look-alikes too (no bold, italics or strike). Inside a code span they
    do not format, so they stay as written and a URL can be copied exactly; line breaks would end the span, so
    they become spaces there."""
    escaped = escape(text)
    if in_code:
        return escaped.replace("`", "\N{MODIFIER LETTER GRAVE ACCENT}").replace("\r", " ").replace("\n", " ")
    return escaped.translate(LOOKALIKES)


def code(text: object) -> str:
    """User text shown as inline code (URLs, layer names, tags): exact, never linked, never formatted."""
    return f"`{neutralise(text, in_code=True) or ' '}`"


SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def mention(user: object) -> str:
    """``<@U…>`` for a Slack user id; anyone else (a name typed in the terminal with ``--as``) as plain text."""
    text = str(user or "")
    return f"<@{text}>" if SLACK_USER_ID.fullmatch(text) else (neutralise(text) or "someone")


def channel_ref(channel: object) -> str:
    """``<#C…>`` for a Slack channel id (Slack shows its name); anything else as plain text."""
    text = str(channel or "")
    return f"<#{text}>" if SLACK_CHANNEL_ID.fullmatch(text) else neutralise(f"#{text}")


def naming_people(render: Callable[[Callable[[str], str], Callable[[str], str]], str]) -> list[Block]:
    """Sentences (``render(who, place)``) as blocks in which people and channels from stored records are live
    Slack mentions and everything else is neutralised: each name goes in as a one-off placeholder that
    neutralising leaves alone and nobody can type, and comes out as ``mention`` / ``channel_ref``."""
    nonce = uuid.uuid4().hex
    live: dict[str, str] = {}

    def placeholder(shown: str) -> str:
        key = f"name{nonce}n{len(live)}x"
        live[key] = shown
        return key

    blocks = text_blocks(render(lambda user: placeholder(mention(user)), lambda ch: placeholder(channel_ref(ch))))
    for block in blocks:
        text = block.get("text") or {}
        for key, shown in live.items():
            if "text" in text:
                text["text"] = text["text"].replace(key, shown)
    return blocks


def clip(text: str, limit: int = MAX_SECTION_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 2] + " …"


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object; ``verbatim`` so Slack links nothing we did not write as a link."""
    return {"type": "mrkdwn", "text": clip(text), "verbatim": True}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text)}


def context(text: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(text)]}


def bounded_list(lines: list[str], *, head: str, limit: int = MAX_SECTION_CHARS) -> str:
    """``head`` and as many ``lines`` as fit in one section; says how many were left out."""
    text = head
    for index, line in enumerate(lines):
        more = f"\n… and {len(lines) - index} more"
        if len(text) + 1 + len(line) + len(more) > limit:
            return text + more
        text += "\n" + line
    return text


def text_blocks(text: str, keep: tuple[str, ...] = ()) -> list[Block]:
    """Plain text (the agent's reply) as sections of at most 3,000 characters, neutralised.

    ``keep``: exact tokens of our own (``<@U…>`` of the configured approvers) that stay live mentions.
    """
    escaped = plain(text, keep)
    blocks: list[Block] = []
    chunk = ""
    for line in escaped.splitlines() or [""]:
        if chunk and len(chunk) + 1 + len(line) > MAX_SECTION_CHARS:
            blocks.append(section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk or not blocks:
        blocks.append(section(chunk or " "))
    if len(blocks) > MAX_BLOCKS:
        blocks = blocks[: MAX_BLOCKS - 1] + [context("… the rest did not fit in one message")]
    return blocks


def plain(text: str, keep: tuple[str, ...] = ()) -> str:
    """The agent's plain-text reply (which quotes users) as mrkdwn that shows it as written: neutralised, with
    only our own ``keep`` tokens left live."""
    escaped = neutralise(text)
    for token in keep:
        escaped = escaped.replace(neutralise(token), token)
    return escaped


# --- status and progress ------------------------------------------------------------------------------

# --- message metadata: which message ends which request ------------------------------------------------------


def finished_metadata(request: str | None, thread_id: str, outcome: str) -> dict[str, Any] | None:
    """The metadata of a request's final message. ``request`` is the key of its lease (``event:<id>``,
    ``decision:<thread>:<interrupt>``, …): a process taking a run over looks for it before answering
    (``SlackApi.finished_in_thread``), so an answer already out is not posted twice. ``outcome``: ``report``,
    ``answer``, ``denied``, ``expired``, ``failed`` or ``stopped``. None for a request without a lease key
    (nothing to look for)."""
    if not request:
        return None
    return {"event_type": FINISHED_EVENT, "event_payload": {"request": request, "thread": thread_id,
                                                            "outcome": outcome}}


def notice_metadata(request: str | None, thread_id: str) -> dict[str, Any] | None:
    """The metadata of a message said on the way to the final one (a stopped run's first line); None as above."""
    if not request:
        return None
    return {"event_type": NOTICE_EVENT, "event_payload": {"request": request, "thread": thread_id}}


def finishes(metadata: object, request: str) -> bool:
    """Whether a message's ``metadata`` (as conversations.replies lists it) marks ``request``'s final message."""
    if not isinstance(metadata, dict) or metadata.get("event_type") != FINISHED_EVENT:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("request") == request


def looking_at(url_count: int) -> str:
    if url_count == 0:
        return "Looking into it…"
    return f"Looking at {url_count} URL{'s' if url_count != 1 else ''}…"


PHASE_WORDS = {"purge": "Purging", "verify": "Verifying"}


def progress_text(phases: dict[str, tuple[int, int]], *, finished: bool = False) -> str:
    """One line per phase, e.g. ``Purging 12/36 · Verifying 0/36``."""
    parts = [f"{PHASE_WORDS.get(phase, phase.title())} {done}/{total}" for phase, (done, total) in phases.items()]
    line = " · ".join(parts) or "Starting…"
    return f"{'✓ Finished' if finished else '⏳'} {line}"


# --- the plan and approval ------------------------------------------------------------------------------

def plan_blocks(items: list[PlanItem], pages: list[str], rejected: list[Rejection]) -> list[Block]:
    """What will be purged: requested pages, dependent pages (and why), layers, the scopes beyond single pages
    (prefixes, whole sites, tags), notes on how layers purge, rejected input (and why)."""
    scope_only = {i.url for i in items if i.is_scope and (i.url == i.target or i.operation.value == "purge_all")}
    requested = list(dict.fromkeys(i.url for i in items if i.requested and i.url not in scope_only))
    added: dict[str, str] = {}
    for item in items:
        if not item.requested and item.url not in requested:
            added.setdefault(item.url, item.reason)
    layers = list(dict.fromkeys(i.layer for i in items))
    purges = count_purges(items)
    blocks: list[Block] = [section(
        f"*Plan:* {plural(purges, 'purge')} over {plural(len(pages) or len(requested) + len(added), 'page')} on "
        f"{plural(len(layers), 'layer')}\n"
        f"*Layers* (from the origin outwards): {', '.join(code(layer) for layer in layers) or '—'}"
    )]
    if requested:
        blocks.append(section(bounded_list([f"• {code(u)}" for u in requested],
                                           head=f"*Requested pages ({len(requested)}):*")))
    if added:
        blocks.append(section(bounded_list([f"• {code(u)} — _{neutralise(why)}_" for u, why in added.items()],
                                           head=f"*Dependent pages added ({len(added)}):*")))
    scopes = [line.removeprefix("Scope: ") for line in scope_lines(items)]
    if scopes:
        blocks.append(section(bounded_list([f"• {neutralise(line)}" for line in scopes],
                                           head=f"*Beyond single pages ({len(scopes)}):*")))
    notes = plan_notes(items)
    if notes:
        blocks.append(context(bounded_list([f"• {neutralise(note)}" for note in notes], head="Notes:", limit=2000)))
    blocks += rejected_blocks(rejected)
    return blocks


def rejected_blocks(rejected: list[Rejection]) -> list[Block]:
    if not rejected:
        return []
    lines = [f"• {code(r.input)} — {neutralise(r.reason)}" for r in rejected]
    return [section(bounded_list(lines, head=f"*Not touched ({len(rejected)}):*"))]


def approval_blocks(result: RunResult) -> list[Block]:
    """The plan, who may approve, and the Approve / Deny buttons (values carry the run and the interrupt)."""
    pending = result.pending or {}
    expires = format_time(pending.get("expires_at"))
    blocks = plan_blocks(result.plan, result.pages, result.rejected)
    blocks.append(section(
        f":raised_hand: *This needs approval:* {neutralise(pending.get('reason', ''))}.\n"
        f"Requested by {mention(pending.get('requester'))}. Who may approve: {pending.get('approvers', '')}.\n"
        f"Expires {expires}."
    ))
    blocks.append(approval_buttons(result))
    return blocks


SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


def approval_buttons(result: RunResult, block_id: str = APPROVAL_BLOCK_ID) -> Block:
    """Approve (with a confirm dialog) and Deny; their values name the run and the interrupt, nothing else."""
    pending = result.pending or {}
    value = json.dumps({"run": result.thread_id, "interrupt": pending.get("interrupt_id", "")})
    return {
        "type": "actions",
        "block_id": block_id,
        "elements": [
            {
                "type": "button", "action_id": APPROVE_ACTION, "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"}, "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Purge these caches?"},
                    "text": mrkdwn(f"{counted(pending.get('purge_count'), 'purge')} over "
                                   f"{counted(pending.get('pages'), 'page')} will be sent now."),
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            },
            {"type": "button", "action_id": DENY_ACTION, "style": "danger",
             "text": {"type": "plain_text", "text": "Deny"}, "value": value},
        ],
    }


def copy_header(channel: str, permalink: str | None) -> Block:
    """The line on a copy of an approval request (approvers' channel, a DM): where it was asked, and a link to
    its thread (Slack's own permalink). Deciding here decides there."""
    where = f"<#{channel}>" if SLACK_CHANNEL_ID.fullmatch(channel) else code(channel)
    link = f" — <{escape(permalink)}|open the thread>" if permalink else ""
    return section(f":bell: An approval request from {where}{link}. Deciding here updates it there too.")


def purge_offer_label(pages: int) -> str:
    return "Purge this page" if pages == 1 else f"Purge these {pages} pages"


def offer_blocks(result: RunResult, offer_id: str) -> list[Block]:
    """The answer to a question about purging: the plan, that nothing was purged, and two buttons. The buttons'
    value only names the run and the offer: the URLs come from the stored run when someone clicks."""
    value = json.dumps({"run": result.thread_id, "offer": offer_id})
    pages = len(result.pages)
    note = f"\nA purge would need approval: {neutralise(result.approval_reason)}." if result.approval_reason else ""
    return [
        *plan_blocks(result.plan, result.pages, result.rejected),
        section(f":information_source: You asked about purging, so *nothing was purged*.{note}\n"
                f"Purge {'this page' if pages == 1 else f'these {pages} pages'}, or just check {'it' if pages == 1 else 'them'}?"),
        {"type": "actions", "block_id": OFFER_BLOCK_ID, "elements": [
            {"type": "button", "action_id": OFFER_PURGE_ACTION, "style": "primary",
             "text": {"type": "plain_text", "text": purge_offer_label(pages)}, "value": value},
            {"type": "button", "action_id": OFFER_CHECK_ACTION,
             "text": {"type": "plain_text", "text": "Just check it" if pages == 1 else "Just check them"},
             "value": value},
        ]},
    ]


def check_offer_blocks(result: RunResult, offer_id: str, pages: int, keep: tuple[str, ...] = ()) -> list[Block]:
    """A check's answer (its verdict first) and one button to purge the pages it did not find fresh: the same
    offer as after a question (the value names the run and the offer; the URLs come from the stored run)."""
    value = json.dumps({"run": result.thread_id, "offer": offer_id})
    answer = text_blocks(result.reply, keep)[: MAX_BLOCKS - 1]
    return [*answer, {"type": "actions", "block_id": OFFER_BLOCK_ID, "elements": [
        {"type": "button", "action_id": OFFER_PURGE_ACTION, "style": "primary",
         "text": {"type": "plain_text", "text": purge_offer_label(pages)}, "value": value}]}]


def offer_taken_blocks(result: RunResult, choice: str, by: str) -> list[Block]:
    """The offer after a click: the plan (or the check's answer), no buttons, and who chose what."""
    chose = "asked to purge these pages" if choice == "purge" else "asked to check them"
    shown = text_blocks(result.reply)[: MAX_BLOCKS - 1] if result.intent == Intent.CHECK else \
        plan_blocks(result.plan, result.pages, result.rejected)
    return [*shown, section(f"{mention(by)} {chose}.")]


def dry_run_blocks(result: RunResult) -> list[Block]:
    """A dry run: the plan, and that nothing was purged."""
    note = (f" A real purge would need approval: {neutralise(result.approval_reason)}."
            if result.approval_reason else "")
    return [*plan_blocks(result.plan, result.pages, result.rejected),
            section(f":test_tube: *Dry run:* nothing was purged.{note}"), *details_blocks(result)]


def decided_blocks(result: RunResult, status: str, by: str | None, at: datetime | str | None) -> list[Block]:
    """The approval message after the decision: the plan, no buttons, and who decided when."""
    words = {
        "approved": f":white_check_mark: Approved by {mention(by)} at {format_time(at)}",
        "denied": f":no_entry_sign: Denied by {mention(by)} at {format_time(at)}",
        "expired": f":hourglass: The approval request expired (noticed at {format_time(at)}); nothing was purged",
    }
    return [*plan_blocks(result.plan, result.pages, result.rejected), section(words.get(status, status))]


def expired_blocks(result: RunResult, expires_at: datetime | str | None, request_id: str) -> list[Block]:
    """An approval card once its request expired undecided: the plan, when it expired and that nothing was purged,
    and Request again in place of Approve / Deny. The button's value names the run and the request, nothing
    else: the plan comes from the stored run, and who may press it is the agent's policy."""
    value = json.dumps({"run": result.thread_id, "request": request_id})
    return [*plan_blocks(result.plan, result.pages, result.rejected)[: MAX_BLOCKS - 2],
            section(f":hourglass: {neutralise(expired_card_line(expires_at))}"),
            {"type": "actions", "block_id": EXPIRED_BLOCK_ID, "elements": [
                {"type": "button", "action_id": REQUEST_AGAIN_ACTION,
                 "text": {"type": "plain_text", "text": "Request again"}, "value": value}]}]


def format_time(value: Any) -> str:
    if not value:
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# --- the report ---------------------------------------------------------------------------------------

def page_section(url: str, results: list[ItemResult]) -> str:
    bad = any(r.status in BAD for r in results)
    lines = [f"{':x:' if bad else ':white_check_mark:'} *{code(url)}*"]
    for r in sorted(results, key=lambda r: ORDER.index(r.status)):
        lines.append(f"    {code(r.layer)}: {neutralise(item_words(r))}")
    return clip("\n".join(lines))


def report_csv(results: list[ItemResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["url", "layer", "status", "detail", "evidence", "attempts"])
    for r in ordered_results(results):
        writer.writerow([r.url, r.layer, r.status.value, r.detail, r.evidence, r.attempts])
    return buffer.getvalue()


def ordered_results(results: list[ItemResult]) -> list[ItemResult]:
    bad = {r.url for r in results if r.status in BAD}
    pages = sorted(dict.fromkeys(r.url for r in results), key=lambda u: u not in bad)
    rank = {url: index for index, url in enumerate(pages)}
    return sorted(results, key=lambda r: (rank[r.url], ORDER.index(r.status)))


def report_blocks(result: RunResult) -> tuple[list[Block], str, str | None]:
    """(blocks, fallback text, CSV or None). Failures first; a CSV when the whole report does not fit."""
    results = result.results
    summary = result_summary(results, result.plan)
    by_page: dict[str, list[ItemResult]] = {}
    for r in ordered_results(results):
        by_page.setdefault(r.url, []).append(r)
    sections = [page_section(url, rows) for url, rows in by_page.items()]
    extra = rejected_blocks(result.rejected)
    room = min(REPORT_PAGE_SECTIONS, MAX_BLOCKS - 3 - len(extra))  # summary, CSV note, console link
    too_long = any(len(s) >= MAX_SECTION_CHARS - 2 for s in sections)
    needs_csv = len(sections) > room or too_long
    blocks = [{**section(f"*{neutralise(summary)}*"), "block_id": REPORT_BLOCK_ID}]
    blocks += [section(s) for s in sections[:room]]
    if needs_csv:
        left = len(sections) - min(len(sections), room)
        note = f"{plural(left, 'more page')} {'is' if left == 1 else 'are'}" if left else \
            "Some details were cut; everything is"
        blocks.append(context(f"{note} in the attached CSV (every page on every layer, failures first)."))
    blocks += extra
    blocks += details_blocks(result)
    return blocks, summary, report_csv(results) if needs_csv else None


def details_blocks(result: RunResult) -> list[Block]:
    """The link to the request's page in the web console, when its address is configured (``web.base_url``)."""
    if not result.web_url:
        return []
    return [context(f"<{escape(result.web_url)}|{escape(DETAILS_LINK)}>")]


# --- the /cachebot command --------------------------------------------------------------------------------

COMMAND_HELP = (
    "*cachebot* clears web caches and checks every layer is fresh before saying done.\n"
    "• `/cachebot purge URL…` — purge these pages (and the pages that show them); answered in the channel, "
    "with an approval request when the purge is big\n"
    "• `/cachebot check URL…` — are these pages fresh in every layer? (only you see the answer)\n"
    "• `/cachebot history URL` — who purged this page, and when\n"
    "• `/cachebot help` — this\n"
    "You can also mention me in a channel, write to me directly, or use the message shortcut "
    "_Clear caches for links in this message_."
)


def command_echo(user: str, text: str) -> str:
    """The command as a channel message (the thread the request runs in): who asked, and exactly what."""
    return f"{mention(user)} asked: {code('/cachebot ' + text)}"


def unknown_command(verb: str) -> str:
    return f"I do not know {code('/cachebot ' + verb)}.\n\n{COMMAND_HELP}"


def needs_urls(verb: str) -> str:
    example = code(f"/cachebot {verb} https://example.com/page")
    return f"{code('/cachebot ' + verb)} needs at least one URL, e.g. {example}."


# --- the message shortcut's modal ------------------------------------------------------------------------

def links_metadata(channel: str, thread_ts: str, urls: list[str]) -> tuple[str, list[str]]:
    """The modal's ``private_metadata`` (where to answer, which links it offers) and the links that fit in it."""
    shown: list[str] = []
    for url in urls:
        candidate = json.dumps({"channel": channel, "thread_ts": thread_ts, "urls": [*shown, url]})
        if len(candidate) > MAX_METADATA_CHARS:
            break
        shown.append(url)
    return json.dumps({"channel": channel, "thread_ts": thread_ts, "urls": shown}), shown


def clear_links_view(urls: list[str], rejected: list[Rejection], *, channel: str, thread_ts: str) -> dict[str, Any]:
    """The modal: the message's links to our sites as checkboxes (all ticked), the rest as not touched. Option
    values are indices into the links in ``private_metadata``; the run screens the chosen links again."""
    metadata, shown = links_metadata(channel, thread_ts, urls)
    view: dict[str, Any] = {"type": "modal", "callback_id": CLEAR_LINKS_VIEW, "private_metadata": metadata,
                            "title": {"type": "plain_text", "text": "Clear caches"},
                            "close": {"type": "plain_text", "text": "Cancel"}}
    if not shown:
        view["blocks"] = [section("I found no links to the sites I look after in this message; nothing to clear."),
                          *rejected_blocks(rejected)]
        return view
    blocks: list[Block] = [section(f"Clear the caches for these {len(shown)} link{'s' if len(shown) != 1 else ''}? "
                                   "I will answer in a thread under the message.")]
    for start in range(0, len(shown), MAX_OPTIONS):
        options = [{"text": {"type": "plain_text", "text": clip(url, MAX_OPTION_CHARS)}, "value": str(index)}
                   for index, url in enumerate(shown[start:start + MAX_OPTIONS], start)]
        blocks.append({"type": "input", "block_id": f"{LINKS_BLOCK}{start // MAX_OPTIONS}", "optional": True,
                       "label": {"type": "plain_text", "text": "Links" if start == 0 else "More links"},
                       "element": {"type": "checkboxes", "action_id": LINKS_ACTION, "options": options,
                                   "initial_options": options}})
    if len(shown) < len(urls):
        blocks.append(context(f"{len(urls) - len(shown)} more links did not fit; mention me with them instead."))
    blocks += rejected_blocks(rejected)
    view["blocks"] = blocks[:MAX_MODAL_BLOCKS]
    view["submit"] = {"type": "plain_text", "text": "Clear caches"}
    return view


MAX_MODAL_BLOCKS = 100


def chosen_links(view: dict[str, Any], urls: list[str]) -> list[str]:
    """The links ticked in a submitted modal: its options' indices into ``urls`` (anything else is ignored)."""
    chosen: list[str] = []
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        if not block_id.startswith(LINKS_BLOCK):
            continue
        for option in (actions.get(LINKS_ACTION) or {}).get("selected_options") or []:
            value = str(option.get("value", ""))
            if value.isdigit() and int(value) < len(urls):
                chosen.append(urls[int(value)])
    return list(dict.fromkeys(chosen))


# --- App Home ------------------------------------------------------------------------------------------------

HOME_WAITING_SHOWN = 20  # requests waiting for the viewer, two blocks each (Slack: 100 blocks in a view)
STATUS_WORDS = {"received": "running", "waiting_approval": "waiting for approval", "done": "done",
                "answered": "answered", "dry_run": "dry run", "denied": "denied", "expired": "expired",
                "error": "failed", "interrupted": "interrupted"}


def home_view(*, recent: list[HistoryEntry], waiting: list[RunResult], notice: str | None = None) -> dict[str, Any]:
    """The Home tab: a notice (the result of a click here), the requests waiting for the viewer with Approve/Deny
    (the card's buttons: same values, same checks), the viewer's recent requests and their status, a how-to."""
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": "cachebot"}}]
    if notice:
        blocks.append(section(notice))
    if waiting:
        blocks.append(section(f"*Waiting for your approval ({len(waiting)}):*"))
        for index, result in enumerate(waiting[:HOME_WAITING_SHOWN]):
            blocks += [section(waiting_line(result)), approval_buttons(result, f"{APPROVAL_BLOCK_ID}_{index}")]
    lines = [recent_line(entry) for entry in recent]
    blocks.append(section(bounded_list(lines, head="*Your recent requests:*") if lines else
                          "*Your recent requests:* none yet."))
    blocks += [{"type": "divider"}, section(COMMAND_HELP)]
    return {"type": "home", "blocks": blocks}


def decided_on_home(channel: str, status: str, permalink: str | None) -> str:
    where = f"<#{channel}>" if SLACK_CHANNEL_ID.fullmatch(channel) else code(channel)
    link = f" (<{escape(permalink)}|the thread>)" if permalink else ""
    return f":white_check_mark: Done: the request in {where}{link} is now *{neutralise(status)}*."


def counted(count: object, word: str) -> str:
    """A count from a stored request ("?" when it is missing), with its noun in the right number."""
    return plural(count, word) if isinstance(count, int) else f"? {word}s"


def waiting_line(result: RunResult) -> str:
    pending = result.pending or {}
    channel = result.thread_id.partition(":")[0]
    where = f"<#{channel}>" if SLACK_CHANNEL_ID.fullmatch(channel) else code(channel)
    pages = ", ".join(code(url) for url in result.pages[:3]) + (f" and {len(result.pages) - 3} more"
                                                                 if len(result.pages) > 3 else "")
    return (f"{mention(pending.get('requester'))} in {where}: {counted(pending.get('purge_count'), 'purge')} over "
            f"{counted(pending.get('pages'), 'page')} ({pages or '—'})\n_{neutralise(pending.get('reason', ''))}_ · "
            f"expires {format_time(pending.get('expires_at'))}")


def recent_line(entry: HistoryEntry) -> str:
    status = STATUS_WORDS.get(entry.status, entry.status)
    if entry.status == "done" and entry.worked is False:
        status = "done, NOT all confirmed fresh"
    return f"• {format_time(entry.received_at)} — {code(clip(' '.join(entry.text.split()), 80))} — *{status}*"


# --- assistant threads ----------------------------------------------------------------------------------

ASSISTANT_PROMPTS_TITLE = "Try one of these"
ASSISTANT_PROMPTS = [  # Slack shows up to 4
    {"title": "Purge a page", "message": "purge https://"},
    {"title": "Is this page fresh?", "message": "check https://"},
    {"title": "Who purged this?", "message": "history https://"},
    {"title": "What can you do?", "message": "help"},
]


def assistant_status(phases: dict[str, tuple[int, int]], pages: int | None) -> str:
    """The assistant thread's status line: "Purging 12/36…", or before the first batch "Purging 84 pages…"."""
    if phases:
        phase, (done, total) = list(phases.items())[-1]
        return f"{PHASE_WORDS.get(phase, phase.title())} {done}/{total}…"
    if pages:
        return f"Purging {pages} page{'s' if pages != 1 else ''}…"
    return "Looking into it…"
