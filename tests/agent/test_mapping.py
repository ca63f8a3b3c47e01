"""Mapping URLs to sites, dependent pages (each with its reason) and the cheapest operation per layer that
clears no more than the plan says: prefixes and whole sites as scopes, tags only where their reach is known."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.layers import build_layer
from agent.mapping import count_purges, expand_pages, plan_items, prefix_depth, sample_pages, scope_items
from agent.models import Operation

RULES = [
    {"match": "^/products/(?P<category>[^/]+)/[^/]+$", "add": ["/products/{category}", "/", "/sitemap.xml"],
     "why": "listing, home and sitemap show products"},
    {"match": "^/blog/", "add": ["/feed.xml"], "why": "the feed lists posts"},
]
VARNISH = {"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:1"}
NGINX = {"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:2"}
SHOP = "https://shop.example"


def config(*layers, site=None, sites=(), rules=RULES, limits=None):
    layers = layers or (VARNISH, NGINX)
    data = {
        "sites": [{"name": "shop", "hosts": ["shop.example"], "origin": "http://127.0.0.1:3",
                   "layers": [layer["name"] for layer in layers], "dependencies": rules, **(site or {})}, *sites],
        "layers": list(layers),
    }
    if limits:
        data["limits"] = limits
    return parse_config(data)


def built(settings):
    return {c.name: build_layer(c) for c in settings.layers}


def plan(settings, urls, tags):
    return plan_items(expand_pages(urls, settings), tags, built(settings), settings)


def on(items, layer):
    return {i.url: i for i in items if i.layer == layer}


def test_rules_add_dependents_once_with_reasons_and_keep_order():
    pages = expand_pages([f"{SHOP}/products/shoes/runner", f"{SHOP}/products/shoes/hiker", f"{SHOP}/blog/new"], config())
    assert list(pages) == [
        f"{SHOP}/products/shoes/runner", f"{SHOP}/products/shoes/hiker", f"{SHOP}/blog/new",
        f"{SHOP}/products/shoes", f"{SHOP}/", f"{SHOP}/sitemap.xml", f"{SHOP}/feed.xml",
    ]
    assert pages[f"{SHOP}/products/shoes/runner"] == (True, "requested")
    requested, why = pages[f"{SHOP}/products/shoes"]
    assert not requested and why == "depends on /products/shoes/runner: listing, home and sitemap show products"
    assert pages[f"{SHOP}/feed.xml"][1].endswith("the feed lists posts")


def test_a_requested_dependent_stays_requested():
    pages = expand_pages([f"{SHOP}/products/hats/beanie", f"{SHOP}/"], config())
    assert pages[f"{SHOP}/"] == (True, "requested")


def test_tag_layer_purges_by_the_pages_own_tag_counts_what_it_clears_and_covers_pages_that_carry_it():
    tags = {f"{SHOP}/products/shoes/runner": ("product-runner", "category-shoes"),
            f"{SHOP}/products/shoes": ("category-shoes", "product-runner", "product-hiker"),
            f"{SHOP}/": ("home", "category-shoes")}
    items = plan(config(), [f"{SHOP}/products/shoes/runner"], tags)

    varnish = on(items, "varnish")
    # category-shoes is on 3 of the pages looked at, product-runner on 2: the specific one is used
    assert varnish[f"{SHOP}/products/shoes/runner"].target == "product-runner"
    assert varnish[f"{SHOP}/products/shoes/runner"].clears == 2
    assert varnish[f"{SHOP}/products/shoes"].operation == Operation.PURGE_TAG
    assert "cleared by the purge of tag product-runner" in varnish[f"{SHOP}/products/shoes"].reason
    assert varnish[f"{SHOP}/"].operation == Operation.PURGE_URL  # not tagged with product-runner
    assert {i.operation for i in items if i.layer == "edge"} == {Operation.PURGE_URL}  # nginx has no tags
    assert count_purges(items) == 8  # 4 pages × 2 layers: the tag purge counts the 2 it clears


def test_a_site_wide_tag_listed_first_is_not_used_for_a_page():
    """The home page, looked at but not planned, shows that "site" reaches beyond the page; "about" does not."""
    settings = config()
    about = f"{SHOP}/about"
    assert sample_pages([about], built(settings), settings) == [f"{SHOP}/"]
    assert sample_pages([about], built(config(NGINX)), config(NGINX)) == []  # no layer purges by tag: no need
    items = plan(settings, [about], {about: ("site", "about"), f"{SHOP}/": ("site", "home")})
    assert on(items, "varnish")[about].target == "about"
    assert f"{SHOP}/" not in on(items, "varnish")  # looked at, never purged


def test_a_page_whose_only_tags_reach_outside_the_plan_is_purged_by_url_and_says_why():
    about = f"{SHOP}/about"
    items = plan(config(), [about], {about: ("site",), f"{SHOP}/": ("site", "home")})
    item = on(items, "varnish")[about]
    assert item.operation == Operation.PURGE_URL and item.target == about
    assert item.note == f"{about} is purged by URL, not by tag: site (also on {SHOP}/, which is not in this plan)"


def test_broad_tags_by_name_or_pattern_and_by_count_are_never_used():
    about = f"{SHOP}/about"
    settings = config(site={"broad_tags": ["all", "section-*"]})
    items = plan(settings, [about], {about: ("all", "section-info", "about")})
    assert on(items, "varnish")[about].target == "about"
    only_broad = plan(settings, [about], {about: ("section-info",)})
    assert on(only_broad, "varnish")[about].operation == Operation.PURGE_URL
    assert "section-info (listed in broad_tags)" in on(only_broad, "varnish")[about].note

    few = config(site={"broad_tag_pages": 2, "dependencies": []})
    pages = [f"{SHOP}/p{i}" for i in range(3)]
    items = plan(few, pages, {page: ("listing", f"p-{page[-1]}") for page in pages})
    assert {on(items, "varnish")[page].target for page in pages} == {"p-0", "p-1", "p-2"}
    items = plan(few, pages, {page: ("listing",) for page in pages})
    item = on(items, "varnish")[pages[0]]
    assert item.operation == Operation.PURGE_URL and "on 3 pages, more than broad_tag_pages (2)" in item.note


def test_a_page_with_too_many_tags_is_purged_by_url_with_a_clear_note():
    about = f"{SHOP}/about"
    settings = config(limits={"max_tags_per_page": 5})
    items = plan(settings, [about], {about: tuple(f"t{i}" for i in range(6))})
    item = on(items, "varnish")[about]
    assert item.operation == Operation.PURGE_URL
    assert item.note == (f"{about} advertises 6 cache tags, more than limits.max_tags_per_page (5): none of them "
                         "is used, the page is purged by URL")


def test_a_page_with_too_many_tags_counts_as_carrying_every_tag():
    """What a flooded page holds is not read, so a tag purge is taken to reach it: outside the plan, no tag."""
    about = f"{SHOP}/about"
    settings = config(limits={"max_tags_per_page": 5})
    items = plan(settings, [about], {about: ("about",), f"{SHOP}/": tuple(f"t{i}" for i in range(6))})
    assert on(items, "varnish")[about].operation == Operation.PURGE_URL


def test_unusable_tag_strings_are_not_sent():
    about = f"{SHOP}/about"
    items = plan(config(), [about], {about: ("x" * 1025, "caf\u00e9", "about")})
    assert on(items, "varnish")[about].target == "about"


TWO_SITES = {"name": "blog", "hosts": ["blog.example"], "origin": "http://127.0.0.1:4", "layers": ["varnish"]}


def test_a_layer_shared_by_two_sites_purges_by_url_unless_the_site_has_a_tag_prefix():
    pricing = f"{SHOP}/pricing"
    tags = {pricing: ("pricing",), f"{SHOP}/": ("home",)}
    shared = config(sites=[TWO_SITES])
    item = on(plan(shared, [pricing], tags), "varnish")[pricing]
    assert item.operation == Operation.PURGE_URL
    assert item.note == ("varnish is shared with site blog and site shop has no tag_prefix, so a tag purge could "
                         "clear the other site's pages: purged by URL")

    namespaced = config(site={"tag_prefix": "shop-"}, sites=[{**TWO_SITES, "tag_prefix": "blog-"}])
    tags = {pricing: ("pricing", "shop-pricing"), f"{SHOP}/": ("home",)}
    assert on(plan(namespaced, [pricing], tags), "varnish")[pricing].target == "shop-pricing"


def test_a_tag_purge_of_one_site_never_covers_the_other_sites_pages():
    settings = config(site={"tag_prefix": "shop-"}, sites=[{**TWO_SITES, "tag_prefix": "blog-"}])
    pricing, post = f"{SHOP}/pricing", "https://blog.example/post"
    tags = {pricing: ("shop-pricing",), post: ("blog-post", "shop-pricing"), f"{SHOP}/": (), "https://blog.example/": ()}
    items = plan(settings, [pricing, post], tags)
    assert on(items, "varnish")[post].target == "blog-post"  # shop-pricing is outside blog's namespace


def test_overlapping_tag_prefixes_on_a_shared_layer_are_refused_at_load():
    from agent.config import ConfigError

    with pytest.raises(ConfigError, match=r"sites\[0\]\.tag_prefix: 'shop-' overlaps 'shop-eu-' of site 'blog'"):
        config(site={"tag_prefix": "shop-"}, sites=[{**TWO_SITES, "tag_prefix": "shop-eu-"}])
    other = {"name": "other", "kind": "varnish", "endpoint": "http://127.0.0.1:5"}
    apart = {**TWO_SITES, "layers": ["other"], "tag_prefix": "shop-eu-"}  # no layer in common: fine
    data = {"sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["varnish"], "tag_prefix": "shop-"}, apart],
            "layers": [VARNISH, other]}
    assert parse_config(data).site_named("blog").tag_prefix == "shop-eu-"


def test_a_trailing_wildcard_is_a_prefix_scope_skipped_where_a_layer_cannot_purge_prefixes():
    settings = config()
    items = scope_items([f"{SHOP}/products/*"], built(settings), settings)
    varnish, edge = on(items, "varnish")[f"{SHOP}/products/*"], on(items, "edge")[f"{SHOP}/products/*"]
    assert (varnish.operation, varnish.target, varnish.requested) == (Operation.PURGE_PREFIX, f"{SHOP}/products/*", True)
    assert "every page under https://shop.example/products/" in varnish.reason
    assert edge.operation == Operation.PURGE_PREFIX
    assert edge.skip == "nginx's cache_purge has no wildcards: list the pages one by one"
    assert edge.reason == "nginx's cache_purge has no wildcards: list the pages one by one: skipped on this layer"
    assert count_purges(items) == 1  # one scope on varnish; nothing is sent to nginx


def test_the_whole_site_wildcard_is_planned_as_purge_everything():
    settings = config()
    items = scope_items([f"{SHOP}/*"], built(settings), settings)
    assert {i.operation for i in items} == {Operation.PURGE_ALL}
    assert {i.url for i in items} == {f"{SHOP}/"}
    varnish = on(items, "varnish")[f"{SHOP}/"]
    assert varnish.reason == "purge everything on site shop (shop.example): https://shop.example/* is every page on the site"


def test_prefix_depth_counts_whole_segments():
    assert prefix_depth(f"{SHOP}/*") == 0
    assert prefix_depth(f"{SHOP}/blog/*") == 1
    assert prefix_depth(f"{SHOP}/blog/20*") == 1  # /blog/20* also covers /blog/2024/...
    assert prefix_depth(f"{SHOP}/blog/2024/*") == 2
    assert prefix_depth(f"{SHOP}/blog/../../*") == 0


def test_cloudflare_takes_prefixes_only_up_to_a_slash():
    cdn = {"name": "cdn", "kind": "cloudflare", "options": {"zone_id": "z1"}, "credentials": {"api_token": "t"}}
    settings = config(cdn)
    items = scope_items([f"{SHOP}/products/sho*", f"{SHOP}/products/*"], built(settings), settings)
    odd, fine = items
    assert odd.reason.startswith("Cloudflare purges a prefix only up to a '/': write https://shop.example/products/*")
    assert fine.reason.startswith("requested: every page under")


def test_cloudfront_collapse_is_planned_as_a_prefix_scope():
    settings = config({"name": "cdn", "kind": "cloudfront", "endpoint": "http://127.0.0.1:3",
                       "options": {"distribution_id": "E123", "collapse_wildcards_over": 3}})
    layers = built(settings)
    urls = [f"{SHOP}/products/shoes/p{i}" for i in range(5)] + [f"{SHOP}/products/hats/h1"]
    items = plan_items({u: (True, "requested") for u in urls}, {}, layers, settings)
    shoes = [i for i in items if "/shoes/" in i.url]
    assert {(i.operation, i.target) for i in shoes} == {(Operation.PURGE_PREFIX, f"{SHOP}/products/shoes/*")}
    assert shoes[0].note == ("cdn sends one wildcard /products/shoes/* instead of 5 paths (collapse_wildcards_over: 3), "
                             "which clears every page under /products/shoes/")
    hat = next(i for i in items if "/hats/" in i.url)
    assert (hat.operation, hat.target) == (Operation.PURGE_URL, f"{SHOP}/products/hats/h1")
    assert count_purges(items) == 2  # the wildcard once, the hat once


# A rule that backtracks exponentially in the regex engine too: each more "a" costs about 1.6 times as long.
SLOW_RULE = {"match": "^/(a|aa)+$", "add": ["/"], "why": "never finishes on a long run of a's"}


def test_a_rule_that_runs_out_of_time_is_skipped_and_named_and_the_others_still_apply():
    settings = config(rules=[SLOW_RULE, *RULES])
    slow = "https://shop.example/" + "a" * 60 + "b"
    product = "https://shop.example/products/shoes/runner"
    pages = expand_pages([slow, product, "https://shop.example/" + "a" * 61 + "b"], settings)

    requested, why = pages[slow]
    assert requested and why.startswith("requested; dependency rule '^/(a|aa)+$' skipped: it took longer than 0.1 s")
    assert "limits.rule_timeout_seconds" in why
    # tried once per request: the pages after it say so instead of waiting for it again
    assert "ran out of time earlier in this request" in pages["https://shop.example/" + "a" * 61 + "b"][1]
    assert "ran out of time earlier in this request" in pages[product][1]
    assert pages["https://shop.example/products/shoes"][1].endswith("listing, home and sitemap show products")


def test_the_rule_from_the_report_finishes_on_a_long_path():
    """``/(\\w+\\s?)*$`` took 15.8 s on a 27-character path with Python's re; the regex engine matches it at once."""
    settings = config(rules=[{"match": r"/(\w+\s?)*$", "add": ["/"], "why": "home"}])
    hostile = "https://shop.example/" + "a" * 40 + "!"
    pages = expand_pages([hostile], settings)
    assert pages == {hostile: (True, "requested")}  # no match, no dependent, no hang


def test_rules_do_not_run_on_paths_over_the_limit_and_the_plan_says_so():
    settings = config(limits={"max_rule_path_chars": 30})
    long_product = "https://shop.example/products/shoes/" + "r" * 40
    pages = expand_pages([long_product, "https://shop.example/products/hats/beanie"], settings)
    assert pages[long_product] == (True, "requested; dependency rules not applied: the path is longer than 30 "
                                         "characters (limits.max_rule_path_chars)")
    assert "https://shop.example/products/hats" in pages  # a short path still gets its dependents
    assert "https://shop.example/products/shoes" not in pages
