"""Mapping URLs to sites, dependent pages (each with its reason) and the cheapest operation per layer."""

from __future__ import annotations

from agent.config import parse_config
from agent.layers import build_layer
from agent.mapping import expand_pages, plan_items
from agent.models import Operation

RULES = [
    {"match": "^/products/(?P<category>[^/]+)/[^/]+$", "add": ["/products/{category}", "/", "/sitemap.xml"],
     "why": "listing, home and sitemap show products"},
    {"match": "^/blog/", "add": ["/feed.xml"], "why": "the feed lists posts"},
]


def config(*layers, rules=RULES, limits=None):
    layers = layers or ({"name": "varnish", "kind": "varnish", "endpoint": "http://127.0.0.1:1"},
                        {"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:2"})
    return parse_config({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": [layer["name"] for layer in layers],
                   "dependencies": rules}],
        "layers": list(layers),
        "limits": limits or {},
    })


def test_rules_add_dependents_once_with_reasons_and_keep_order():
    pages = expand_pages(["https://shop.example/products/shoes/runner", "https://shop.example/products/shoes/hiker",
                          "https://shop.example/blog/new"], config())
    assert list(pages) == [
        "https://shop.example/products/shoes/runner", "https://shop.example/products/shoes/hiker",
        "https://shop.example/blog/new", "https://shop.example/products/shoes", "https://shop.example/",
        "https://shop.example/sitemap.xml", "https://shop.example/feed.xml",
    ]
    assert pages["https://shop.example/products/shoes/runner"] == (True, "requested")
    requested, why = pages["https://shop.example/products/shoes"]
    assert not requested and why == "depends on /products/shoes/runner: listing, home and sitemap show products"
    assert pages["https://shop.example/feed.xml"][1].endswith("the feed lists posts")


def test_a_requested_dependent_stays_requested():
    pages = expand_pages(["https://shop.example/products/hats/beanie", "https://shop.example/"], config())
    assert pages["https://shop.example/"] == (True, "requested")


def test_tag_layer_purges_by_the_pages_own_tag_and_covers_pages_that_carry_it():
    settings = config()
    layers = {c.name: build_layer(c) for c in settings.layers}
    pages = expand_pages(["https://shop.example/products/shoes/runner"], settings)
    tags = {"https://shop.example/products/shoes/runner": ("product-runner", "category-shoes"),
            "https://shop.example/products/shoes": ("category-shoes", "product-runner", "product-hiker"),
            "https://shop.example/": ("home",)}
    items = plan_items(pages, tags, layers, settings)

    varnish = {i.url: i for i in items if i.layer == "varnish"}
    assert varnish["https://shop.example/products/shoes/runner"].target == "product-runner"
    assert varnish["https://shop.example/products/shoes"].operation == Operation.PURGE_TAG
    assert "cleared by the purge of tag product-runner" in varnish["https://shop.example/products/shoes"].reason
    assert varnish["https://shop.example/"].operation == Operation.PURGE_URL  # not tagged with product-runner
    assert {i.operation for i in items if i.layer == "edge"} == {Operation.PURGE_URL}  # nginx has no tags


def test_plan_says_when_cloudfront_will_collapse_paths_to_a_wildcard():
    settings = config({"name": "cdn", "kind": "cloudfront", "endpoint": "http://127.0.0.1:3",
                       "options": {"distribution_id": "E123", "collapse_wildcards_over": 3}})
    layers = {c.name: build_layer(c) for c in settings.layers}
    urls = [f"https://shop.example/products/shoes/p{i}" for i in range(5)]
    items = plan_items({u: (True, "requested") for u in urls}, {}, layers, settings)
    assert all("sent as /products/shoes/* (1 path instead of 5)" in item.reason for item in items)


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
