"""resolve: which URLs did the person give, which of them do we manage, and which sites are meant?"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from langgraph.runtime import Runtime

from agent.models import Intent
from agent.state import AgentContext, PurgeState, context_of
from agent.understanding import mask_urls, words_only
from agent.urls import drop_ignored_params, message_too_long, normalise, screen


async def resolve_node(state: PurgeState, runtime: Runtime[AgentContext]) -> PurgeState:
    config = context_of(runtime).config
    urls, rejected, dropped = screen(state.get("message", ""), config)
    if state.get("selected") and state["intent"] != Intent.PURGE_ALL:
        urls = narrow_to_selection(state.get("message", ""), urls, state["selected"], config)
    update: PurgeState = {"urls": urls, "rejected": rejected,
                          "dropped_query": [d for d in dropped if d.url in urls]}
    if state["intent"] == Intent.PURGE_ALL:
        # A message refused for its length is refused whole: its words do not name a site either.
        too_long = message_too_long(state.get("message", ""), config)
        update["target_sites"] = [] if too_long else sites_meant(state.get("message", ""), urls, config)
    return update


def narrow_to_selection(message: str, urls: list[str], selected: list[int], config) -> list[str]:
    """Only the screened URLs behind the selected placeholders ([URL2] -> 2). A selection can only narrow:
    placeholders that do not exist select nothing, and nothing outside ``urls`` is ever added."""
    candidates = mask_urls(message).urls
    wanted = set()
    for number in selected:
        if 1 <= number <= len(candidates):
            try:
                wanted.add(drop_ignored_params(normalise(candidates[number - 1]), config)[0])
            except ValueError:
                continue
    return [url for url in urls if url in wanted]


def sites_meant(message: str, urls: list[str], config) -> list[str]:
    """Sites named by their URLs or by name in the words; the only site when just one is configured."""
    named = [config.site_for_host(urlsplit(url).hostname or "").name for url in urls]
    words = words_only(message).lower()
    named += [site.name for site in config.sites if re.search(rf"\b{re.escape(site.name)}\b", words)]
    if not named and len(config.sites) == 1:
        named = [config.sites[0].name]
    return list(dict.fromkeys(named))


def route_after_resolve(state: PurgeState) -> Literal["plan", "check", "report"]:
    if state["intent"] == Intent.PURGE_ALL:
        return "plan" if state.get("target_sites") else "report"
    if not state.get("urls"):
        return "report"
    return "check" if state["intent"] == Intent.CHECK else "plan"
