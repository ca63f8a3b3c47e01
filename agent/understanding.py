"""What does the person want? The rule-based understanding, cachebot's embedded default.

URLs are found elsewhere (``agent.urls``), deterministically; this module only decides the intent from the words
around them, so it works the same for one URL or five hundred. Message text is data: nothing here can grant
approval or widen the scope beyond what the words plainly ask for, and policy is applied later regardless.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from agent.models import Intent

SLACK_TOKEN = re.compile(r"<[@#!][^>]*>")
LINK = re.compile(r"<[^>\s]+>|\b(?:https?|ftp|file|javascript|data|mailto):\S+|\bwww\.\S+", re.IGNORECASE)

HELP = re.compile(
    r"^\s*(help|\?|what can you do|how does this work|how do (i|you) use|usage|commands?)\b", re.IGNORECASE
)
PURGE_ALL = re.compile(
    r"\b(purge|clear|flush|wipe|invalidate|bust|empty|reset)\b.{0,40}"
    r"\b(everything|entire|whole|full cache|all (the )?(cache|caches|pages|of it)|site-?wide)\b"
    r"|\b(purge|clear|flush) all\b|\bnuke\b|\bpurge everything\b",
    re.IGNORECASE,
)
CHECK = re.compile(
    r"\b(is|are|was|does|do)\b.{0,80}\b(cached|in (the )?cache|stale|fresh|up to date|out of date|served from)\b"
    r"|\bwhy\b.{0,60}\b(stale|old|outdated|not updat\w*|still)\b"
    r"|\b(check|status|inspect|diagnose|look at)\b"
    r"|\bwhich (layer|cache)",
    re.IGNORECASE,
)
PURGE = re.compile(
    r"\b(purge|clear|flush|refresh|invalidate|bust|reset|update|remove|delete|wipe|evict)\w*"
    r"|\b(old|stale|outdated|wrong|previous)\b|\bstill (show|display|has|have)\w*|\bcache\w*",
    re.IGNORECASE,
)
NEGATION = re.compile(r"\b(don'?t|do not|never|no need to)\s+(purge|clear|flush|touch)\b", re.IGNORECASE)


class Understanding(BaseModel):
    intent: Intent
    reply: str = ""


def words_only(message: str) -> str:
    """The message without links and Slack tokens: the words we judge the intent from."""
    return LINK.sub(" ", SLACK_TOKEN.sub(" ", message)).strip()


def understand(message: str, has_urls: bool) -> Understanding:
    words = words_only(message)
    if not message.strip():
        return Understanding(intent=Intent.UNKNOWN, reply="Which page? Paste the URL(s) you want me to clear.")
    if HELP.search(words) and not has_urls:
        return Understanding(intent=Intent.HELP)
    if NEGATION.search(words):
        return Understanding(intent=Intent.CHECK if has_urls else Intent.UNKNOWN,
                             reply="You asked me not to purge, so I only looked." if has_urls else
                             "Understood, I won't purge anything.")
    if PURGE_ALL.search(words):
        return Understanding(intent=Intent.PURGE_ALL)
    if CHECK.search(words) and (has_urls or "?" in words):
        return Understanding(intent=Intent.CHECK)
    if has_urls or PURGE.search(words):
        return Understanding(intent=Intent.PURGE)
    return Understanding(
        intent=Intent.UNKNOWN,
        reply="I can clear cached pages. Paste the URL(s) that show old content, or say 'help'.",
    )
