"""URL -> site -> layers, plus the pages that depend on it, each with the reason it was added.

Scope is explicit. A URL whose path ends in ``*`` is a *prefix* (every page under it) and ``https://host/*`` is
the whole site: both are planned as scopes on the layers that can purge them (skipped, with the reason, on the
others), never as page purges, and the approval rules look at them (``agent/policy.py``).

Tags are used only where their reach is known to stay inside the plan: on a layer no other site shares (or with
the site's ``tag_prefix``), never a tag the site calls broad, never a tag seen on a page outside the plan; among
the page's own tags the one on the fewest pages is chosen, and a tag purge counts every page it is known to clear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from urllib.parse import urlsplit, urlunsplit

import regex

from agent.config import AppConfig, LimitsConfig, SiteConfig
from agent.layers.base import CacheLayer, Capability
from agent.layers.wire import prefix_parts
from agent.models import Operation, PlanItem

# A tag longer than this is not used (Fastly's limit for one surrogate key; xkey and Cache-Tag allow less).
MAX_TAG_LENGTH = 1024
_TAG_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: what every tag header can carry

# Why a layer without prefix purges is skipped for a prefix, in words that say what to do instead.
NO_PREFIX_PURGE = {
    "nginx": "nginx's cache_purge has no wildcards: list the pages one by one",
    "fastly": "Fastly has no purge by prefix: list the pages, or purge a surrogate key",
    "akamai": "Akamai Fast Purge has no purge by prefix: list the pages, or purge a tag or CP code",
    "memcached": "memcached cannot list its keys, so it cannot purge by prefix",
    "webhook": "a webhook purges the URLs it is given; it has no purge by prefix",
}


def site_of(url: str, config: AppConfig) -> SiteConfig:
    site = config.site_for_host(urlsplit(url).hostname or "")
    if site is None:  # screen_urls only lets configured hosts through; this guards later changes
        raise ValueError(f"{url} is not on a configured site")
    return site


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    path, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


# --- scopes: prefixes and whole sites ---------------------------------------------------------------------


def is_prefix(url: str) -> bool:
    """``https://shop.example/products/*``: a path ending in its only ``*``, no query (the URL screening's form)."""
    try:
        prefix_parts(url)
    except ValueError:
        return False
    return True


def prefix_depth(prefix: str) -> int:
    """Whole path segments before the ``*``: ``/blog/2024/*`` has 2, ``/blog/20*`` 1, ``/*`` 0. A dot segment
    could climb out of the prefix, so a prefix holding one (or one that cannot be read) counts as 0 (the widest)."""
    try:
        _, path = prefix_parts(prefix)
    except ValueError:
        return 0
    segments = path.split("/")[1:-1]  # the last piece is not a whole segment: /blog/20* covers /blog/2024/...
    if any(segment in (".", "..") for segment in segments):
        return 0
    return len([segment for segment in segments if segment])


def split_scopes(urls: Sequence[str]) -> tuple[list[str], list[str]]:
    """(page URLs, URLs with a ``*``) in request order: a ``*`` is never sent as part of a page's URL."""
    return [url for url in urls if "*" not in url], [url for url in urls if "*" in url]


def scope_items(prefixes: Sequence[str], layers: Mapping[str, CacheLayer], config: AppConfig) -> list[PlanItem]:
    """Each requested prefix on every layer of its site; ``https://host/*`` is the whole site (purge everything).

    A ``*`` anywhere else (mid-path, in the query) means nothing a plan can show honestly: some backends read it
    as a wildcard, others literally. Such a URL is listed on every layer as skipped, and never sent."""
    items: list[PlanItem] = []
    for prefix in prefixes:
        site = site_of(prefix, config)
        if not is_prefix(prefix):
            why = f"'*' is a wildcard only at the very end of a path, without a query: {prefix} is not purged"
            items += [PlanItem(url=prefix, site=site.name, layer=name, operation=Operation.PURGE_URL, target=prefix,
                               requested=True, reason=f"{why}: skipped", skip=why) for name in site.layers]
            continue
        if prefix_parts(prefix)[1] == "/":
            items += purge_all_items(site, layers, why=f"{prefix} is every page on the site")
            continue
        for name in site.layers:
            items.append(prefix_item(prefix, site.name, layers[name]))
    return items


def prefix_item(prefix: str, site: str, layer: CacheLayer) -> PlanItem:
    under = prefix[:-1]
    problem = prefix_problem(layer, prefix)
    reason = f"requested: every page under {under} (a prefix purge; how many pages it clears is not known)"
    return PlanItem(url=prefix, site=site, layer=layer.name, operation=Operation.PURGE_PREFIX, target=prefix,
                    requested=True, reason=reason if not problem else f"{problem}: skipped on this layer",
                    skip=problem or "")


def prefix_problem(layer: CacheLayer, prefix: str) -> str | None:
    """Why ``layer`` will not purge ``prefix`` (then it is skipped there), or None."""
    if not layer.supports(Capability.PURGE_PREFIX):
        return NO_PREFIX_PURGE.get(layer.kind, f"{layer.kind} cannot purge by prefix")
    return layer.prefix_problem(prefix)


def purge_all_items(site: SiteConfig, layers: Mapping[str, CacheLayer], why: str = "") -> list[PlanItem]:
    """Everything on every layer of ``site``; the layers that cannot purge everything are skipped, said so."""
    items = []
    root = f"https://{site.hosts[0]}/"
    whole = f"purge everything on site {site.name} ({', '.join(site.hosts)})" + (f": {why}" if why else "")
    for name in site.layers:
        layer = layers[name]
        can = layer.supports(Capability.PURGE_ALL)
        items.append(
            PlanItem(
                url=root, site=site.name, layer=name, operation=Operation.PURGE_ALL,
                target=" ".join(site.hosts), requested=True,
                reason=whole if can else f"{layer.kind} cannot purge everything: skipped",
                skip="" if can else f"{layer.kind} cannot purge everything",
            )
        )
    return items


# --- pages ------------------------------------------------------------------------------------------------


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


def sample_pages(pages: Iterable[str], layers: Mapping[str, CacheLayer], config: AppConfig) -> list[str]:
    """Pages looked at (for their tags) but not purged: the home page of each site that may purge by tag,
    when it is not in the plan.

    Two tags of a page can be on exactly the same planned pages, one specific ("about") and one site-wide
    ("site"); the home page tells them apart. A tag found there does not stay inside a plan without it."""
    planned = list(dict.fromkeys(pages))
    samples: dict[str, None] = {}
    for url in planned:
        site = site_of(url, config)
        home = with_path(url, "/")
        tag_layers = any(layers[name].supports(Capability.PURGE_TAG) for name in site.layers)
        if site.origin and site.discover_tags and tag_layers and home not in planned:
            samples.setdefault(home, None)
    return list(samples)


def plan_items(
    pages: Mapping[str, tuple[bool, str]],
    tags: Mapping[str, Sequence[str]],
    layers: Mapping[str, CacheLayer],
    config: AppConfig,
) -> list[PlanItem]:
    """One item per page per layer, choosing the cheapest operation that clears no more than the plan says.

    ``tags`` holds what each page advertises at its origin; it may hold pages outside ``pages`` (looked at, not
    planned: see ``sample_pages``). On a tag-capable layer a requested page is purged by its most specific
    usable tag (``choose_tag``), which also clears the planned pages carrying it: those need no purge of their
    own there. A layer that would rather send a wildcard (``collapsed_prefixes``) gets a prefix purge, shown.
    """
    reach = tag_reach(tags, config)
    items: list[PlanItem] = []
    for url, (requested, reason) in pages.items():
        site = site_of(url, config)
        advertised = tuple(tags.get(url, ()))
        chosen, why_not = choose_tag(url, advertised, reach, set(pages), site, config) if requested else (None, "")
        for layer_name in site.layers:
            layer = layers[layer_name]
            usable = tags_usable_on(layer, site, config)
            tag = chosen if usable else None
            why = why_not if usable else shared_layer_note(layer, site, config) if chosen else ""
            items.append(item_for(url, site.name, layer, requested, reason, tag, why))
    items = cover_by_tags(items, tags)
    for item in items:
        if item.operation == Operation.PURGE_TAG:
            item.clears = len(reach.get((item.site, item.target), ()))
    return collapse_to_prefixes(items, layers)


def item_for(
    url: str, site: str, layer: CacheLayer, requested: bool, reason: str, tag: str | None, why_not: str
) -> PlanItem:
    common = dict(url=url, site=site, layer=layer.name, requested=requested, reason=reason)
    if tag:
        return PlanItem(operation=Operation.PURGE_TAG, target=tag, **common)
    note = why_not if requested and why_not and layer.supports(Capability.PURGE_TAG) else ""
    operation = Operation.DELETE_KEYS if layer.kind in {"redis", "memcached"} else Operation.PURGE_URL
    return PlanItem(operation=operation, target=url, note=note, **common)


def cover_by_tags(items: list[PlanItem], tags: Mapping[str, Sequence[str]]) -> list[PlanItem]:
    """A URL purge is redundant on a layer where a planned tag purge of the same site already clears that page."""
    tag_purges = {(i.site, i.layer, i.target) for i in items if i.operation == Operation.PURGE_TAG}
    for item in items:
        if item.operation != Operation.PURGE_URL:
            continue
        covering = next((t for t in tags.get(item.url, ()) if (item.site, item.layer, t) in tag_purges), None)
        if covering:
            item.operation = Operation.PURGE_TAG
            item.target = covering
            item.reason += f" (cleared by the purge of tag {covering})"
            item.note = ""
    return items


def collapse_to_prefixes(items: list[PlanItem], layers: Mapping[str, CacheLayer]) -> list[PlanItem]:
    """Where a layer clears many pages with one wildcard (CloudFront's ``collapse_wildcards_over``), the plan
    says so: those pages get a prefix purge on that layer, which is a scope like any requested wildcard."""
    for name, layer in layers.items():
        mine = [item for item in items if item.layer == name and item.operation == Operation.PURGE_URL]
        collapsed = layer.collapsed_prefixes([item.target for item in mine]) if mine else {}
        for item in mine:
            if item.target in collapsed:
                prefix, why = collapsed[item.target]
                item.operation, item.target, item.note = Operation.PURGE_PREFIX, prefix, why
    return items


# --- tags -------------------------------------------------------------------------------------------------


def tags_usable_on(layer: CacheLayer, site: SiteConfig, config: AppConfig) -> bool:
    """Tag purges are global to a layer (one xkey index, one CDN zone or service): on a layer another site
    shares, only a site with its own ``tag_prefix`` (checked apart from the others' at load) may use them."""
    if not layer.supports(Capability.PURGE_TAG):
        return False
    return site.tag_prefix is not None or len(config.sites_on_layer(layer.name)) <= 1


def shared_layer_note(layer: CacheLayer, site: SiteConfig, config: AppConfig) -> str:
    if not layer.supports(Capability.PURGE_TAG):
        return ""
    others = ", ".join(s.name for s in config.sites_on_layer(layer.name) if s.name != site.name)
    return (f"{layer.name} is shared with site {others} and site {site.name} has no tag_prefix, so a tag purge "
            f"could clear the other site's pages: purged by URL")


def tag_reach(tags: Mapping[str, Sequence[str]], config: AppConfig) -> dict[tuple[str, str], set[str]]:
    """(site, tag) -> the pages looked at that carry it. A page advertising more tags than the limit is taken
    to carry every tag: what it holds is not read, and any tag purge may clear it."""
    limit = config.limits.max_tags_per_page
    reach: dict[tuple[str, str], set[str]] = {}
    flooded: dict[str, set[str]] = {}  # site -> pages over the limit
    for url, advertised in tags.items():
        site = site_of(url, config).name
        if len(advertised) > limit:
            flooded.setdefault(site, set()).add(url)
            continue
        for tag in advertised:
            reach.setdefault((site, tag), set()).add(url)
    for (site, _), pages in reach.items():
        pages |= flooded.get(site, set())
    return reach


def is_broad(tag: str, site: SiteConfig) -> bool:
    return any(fnmatchcase(tag, pattern) for pattern in site.broad_tags)


def choose_tag(
    url: str,
    advertised: Sequence[str],
    reach: Mapping[tuple[str, str], set[str]],
    planned: set[str],
    site: SiteConfig,
    config: AppConfig,
) -> tuple[str | None, str]:
    """The tag to purge ``url`` by, or (None, why none is used).

    Only the page's own tags (as its site's origin advertised them) qualify, and only those inside the site's
    ``tag_prefix``, not broad (``broad_tags``, or on more than ``broad_tag_pages`` of the pages looked at), and
    seen on no page outside the plan. Of those, the one on the fewest pages; the origin's order breaks ties."""
    if not advertised:
        return None, ""
    limit = config.limits.max_tags_per_page
    if len(advertised) > limit:
        return None, (f"{url} advertises {len(advertised):,} cache tags, more than limits.max_tags_per_page "
                      f"({limit:,}): none of them is used, the page is purged by URL")
    candidates: list[tuple[int, int, str]] = []
    refused: list[str] = []
    for position, tag in enumerate(advertised):
        why = tag_refusal(tag, reach.get((site.name, tag), set()), planned, site)
        if why:
            refused.append(f"{tag} ({why})")
        else:
            candidates.append((len(reach.get((site.name, tag), ())), position, tag))
    if candidates:
        return min(candidates)[2], ""
    shown = "; ".join(refused[:3]) + (f"; and {len(refused) - 3} more" if len(refused) > 3 else "")
    return None, f"{url} is purged by URL, not by tag: {shown}"


def tag_refusal(tag: str, carriers: set[str], planned: set[str], site: SiteConfig) -> str:
    """Why ``tag`` may not be used to purge a page of ``site`` ("" when it may)."""
    if len(tag) > MAX_TAG_LENGTH or not _TAG_CHARS.match(tag):
        return f"not a usable tag: more than {MAX_TAG_LENGTH} characters, spaces or non-ASCII"
    if site.tag_prefix is not None and not tag.startswith(site.tag_prefix):
        return f"outside the site's tag_prefix {site.tag_prefix!r}"
    if is_broad(tag, site):
        return "listed in broad_tags"
    if len(carriers) > site.broad_tag_pages:
        return f"on {len(carriers)} pages, more than broad_tag_pages ({site.broad_tag_pages})"
    outside = sorted(carriers - planned)
    if outside:
        return f"also on {outside[0]}, which is not in this plan"
    return ""


# --- counting ---------------------------------------------------------------------------------------------


def count_purges(items: Sequence[PlanItem]) -> int:
    """Pages × layers the plan clears, where that is known: a tag purge counts every planned page it clears,
    a prefix or whole-site purge counts once (its reach is not known: the scope rules ask for approval), and
    a layer skipped for a scope counts nothing."""
    pages = {(i.layer, i.url) for i in items if not i.is_scope and not i.skip}
    scopes = {(i.layer, i.operation.value, i.target) for i in items if i.is_scope and not i.skip}
    return len(pages) + len(scopes)
