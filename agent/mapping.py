"""URL -> site -> layers, plus the pages that depend on it, each with the reason it was added."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import regex

from agent.config import AppConfig, LimitsConfig, SiteConfig
from agent.layers.base import CacheLayer, Capability
from agent.models import Operation, PlanItem


def site_of(url: str, config: AppConfig) -> SiteConfig:
    site = config.site_for_host(urlsplit(url).hostname or "")
    if site is None:  # screen_urls only lets configured hosts through; this guards later changes
        raise ValueError(f"{url} is not on a configured site")
    return site


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    path, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def dependents(url: str, site: SiteConfig, limits: LimitsConfig | None = None,
               slow_rules: set[str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """Pages the site's rules say also show ``url``'s content: ([(page URL, why)], [why a rule was not run]).

    Rules are written by operators but run on paths anyone in the channel can type, so each match has a time
    limit (``limits.rule_timeout_seconds``, the ``regex`` package's ``timeout``) and only paths up to
    ``limits.max_rule_path_chars`` are tried. A rule that runs out of time is skipped, said in the plan, and put
    in ``slow_rules`` so the rest of the request does not wait for it again. ``concurrent=True`` lets other
    threads (Slack acks) run while a rule matches.
    """
    limits = limits or LimitsConfig()
    slow_rules = set() if slow_rules is None else slow_rules
    path = urlsplit(url).path or "/"
    if site.dependencies and len(path) > limits.max_rule_path_chars:
        return [], [f"dependency rules not applied: the path is longer than {limits.max_rule_path_chars} "
                    "characters (limits.max_rule_path_chars)"]
    added: list[tuple[str, str]] = []
    skipped: list[str] = []
    for rule in site.dependencies:
        if rule.match in slow_rules:
            skipped.append(f"dependency rule '{rule.match}' skipped: it ran out of time earlier in this request")
            continue
        try:
            match = regex.search(rule.match, path, timeout=limits.rule_timeout_seconds, concurrent=True)
        except TimeoutError:
            slow_rules.add(rule.match)
            skipped.append(f"dependency rule '{rule.match}' skipped: it took longer than "
                           f"{limits.rule_timeout_seconds:g} s on this path (limits.rule_timeout_seconds), so the "
                           "pages it would add are not in this plan")
            continue
        if not match:
            continue
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        for template in rule.add:
            try:
                dependent = with_path(url, template.format(**groups))
            except (KeyError, IndexError):
                continue  # the rule names a group this match did not capture
            if dependent != url:
                added.append((dependent, rule.why or f"rule {rule.match} adds {template}"))
    return added, skipped


def expand_pages(urls: Sequence[str], config: AppConfig) -> dict[str, tuple[bool, str]]:
    """Requested URLs first, then their dependents: page -> (requested?, reason). Each page appears once.
    A rule that could not run is named in the reason of the page it was tried on."""
    pages: dict[str, tuple[bool, str]] = {url: (True, "requested") for url in urls}
    slow_rules: set[str] = set()
    for url in urls:
        found, skipped = dependents(url, site_of(url, config), config.limits, slow_rules)
        if skipped:
            pages[url] = (True, "; ".join(["requested", *skipped]))
        for dependent, why in found:
            if dependent not in pages:
                pages[dependent] = (False, f"depends on {urlsplit(url).path or '/'}: {why}")
    return pages


def plan_items(
    pages: Mapping[str, tuple[bool, str]],
    tags: Mapping[str, Sequence[str]],
    layers: Mapping[str, CacheLayer],
    config: AppConfig,
) -> list[PlanItem]:
    """One item per page per layer, choosing the cheapest correct operation for each layer.

    On a tag-capable layer a requested page that advertises tags is purged by its own tag (the first one, by
    convention), which also clears every cached page showing it; pages that carry that tag need no purge of
    their own there.
    """
    items: list[PlanItem] = []
    for url, (requested, reason) in pages.items():
        site = site_of(url, config)
        for layer_name in site.layers:
            layer = layers[layer_name]
            items.append(item_for(url, site.name, layer, requested, reason, tags.get(url, ())))
    return add_plan_notes(cover_by_tags(items, tags), layers)


def add_plan_notes(items: list[PlanItem], layers: Mapping[str, CacheLayer]) -> list[PlanItem]:
    """Let each backend say how it will really send its targets (a CloudFront wildcard, say)."""
    for name, layer in layers.items():
        for operation in Operation:
            mine = [item for item in items if item.layer == name and item.operation == operation]
            notes = layer.plan_notes(operation.value, [item.target for item in mine]) if mine else {}
            for item in mine:
                if item.target in notes:
                    item.reason += f"; {notes[item.target]}"
    return items


def item_for(url: str, site: str, layer: CacheLayer, requested: bool, reason: str, tags: Sequence[str]) -> PlanItem:
    common = dict(url=url, site=site, layer=layer.name, requested=requested, reason=reason)
    if requested and tags and layer.supports(Capability.PURGE_TAG):
        return PlanItem(operation=Operation.PURGE_TAG, target=tags[0], **common)
    operation = Operation.DELETE_KEYS if layer.kind in {"redis", "memcached"} else Operation.PURGE_URL
    return PlanItem(operation=operation, target=url, **common)


def cover_by_tags(items: list[PlanItem], tags: Mapping[str, Sequence[str]]) -> list[PlanItem]:
    """A URL purge is redundant on a layer where a planned tag purge already clears that page."""
    tag_purges = {(i.layer, i.target) for i in items if i.operation == Operation.PURGE_TAG}
    for item in items:
        if item.operation != Operation.PURGE_URL:
            continue
        covering = next((t for t in tags.get(item.url, ()) if (item.layer, t) in tag_purges), None)
        if covering:
            item.operation = Operation.PURGE_TAG
            item.target = covering
            item.reason += f" (cleared by the purge of tag {covering})"
    return items


def purge_all_items(site: SiteConfig, layers: Mapping[str, CacheLayer]) -> list[PlanItem]:
    """Everything on every layer of ``site``; the layers that cannot purge everything are skipped, said so."""
    items = []
    root = f"https://{site.hosts[0]}/"
    for name in site.layers:
        layer = layers[name]
        can = layer.supports(Capability.PURGE_ALL)
        items.append(
            PlanItem(
                url=root, site=site.name, layer=name, operation=Operation.PURGE_ALL,
                target=" ".join(site.hosts), requested=True,
                reason="purge everything on the site" if can else f"{layer.kind} cannot purge everything: skipped",
            )
        )
    return items
