"""The whole graph against real Redis, Varnish and nginx: purge, verify, report honestly."""

from __future__ import annotations

import re

from agent.mapping import count_purges
from agent.models import Intent, ItemStatus, Operation
from tests.agent.conftest import through_edge, warm

PRICING = "https://shop.example/pricing"


def statuses(result, url):
    return {r.layer: r.status for r in result.results if r.url == url}


def test_stale_price_is_purged_on_every_layer_and_verified_fresh(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    assert "$10" in through_edge(fresh_stack, "/pricing").text  # stale before

    result = make_agent().ask(f"these still show the old price: <{PRICING}>", user="bob")

    assert result.intent == Intent.PURGE
    assert result.urls == [PRICING]
    assert statuses(result, PRICING) == {layer: ItemStatus.PURGED_VERIFIED for layer in ("appcache", "varnish", "edge")}
    assert "$12" in through_edge(fresh_stack, "/pricing").text  # fresh after
    home = [r for r in result.results if r.url == "https://shop.example/"]
    assert home and all(r.status in (ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED) for r in home)
    # the report counts what the plan counted, in words a requester reads
    assert result.reply.startswith(f"All {count_purges(result.plan)} purges done and verified fresh.")
    assert "×" not in result.reply


def test_product_page_adds_dependents_with_reasons_and_uses_tags(fresh_stack, make_agent):
    warm(fresh_stack, "/products/shoes/runner", "/products/shoes")
    result = make_agent().ask("<https://shop.example/products/shoes/runner>", user="bob", dry_run=True)

    reasons = {item.url: item.reason for item in result.plan if item.layer == "edge"}
    assert set(reasons) == {"https://shop.example/products/shoes/runner", "https://shop.example/products/shoes",
                            "https://shop.example/", "https://shop.example/sitemap.xml"}
    assert "category listing" in reasons["https://shop.example/products/shoes"]
    varnish = [item for item in result.plan if item.layer == "varnish"]
    assert {item.operation for item in varnish} == {Operation.PURGE_TAG}  # one xkey purge covers them all
    assert {item.target for item in varnish} == {"product-runner"}
    assert result.results == []  # dry run: nothing sent
    assert through_edge(fresh_stack, "/products/shoes/runner").headers["X-Cache-Status"] == "HIT"


def test_one_layer_down_is_reported_and_hides_nothing(fresh_stack, make_agent):
    layers = fresh_stack.config_dict()["layers"]
    layers[2] = {**layers[2], "endpoint": "http://127.0.0.1:9", "retries": 1}
    agent = make_agent(layers=layers)
    result = agent.ask(f"purge <{PRICING}>", user="bob")

    got = statuses(result, PRICING)
    assert got["edge"] == ItemStatus.FAILED
    assert got["varnish"] in (ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED)
    assert got["appcache"] in (ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED)
    assert result.reply.startswith("2 of 2 pages NOT fresh: https://shop.example/pricing on edge;")
    details = result.reply.split("\n", 1)[1]
    assert details.index("✗") < details.index("edge")  # failures first


def test_check_says_which_layer_is_stale_without_purging(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    fresh_stack.flush_app_cache()  # the origin now renders the new price; varnish and nginx still hold $10

    result = make_agent().ask(f"why is <{PRICING}> stale?", user="bob")

    assert result.intent == Intent.CHECK
    by_layer = {c.layer: c for c in result.checks}
    assert by_layer["varnish"].cached and by_layer["varnish"].fresh is False
    assert by_layer["edge"].cached and by_layer["edge"].fresh is False
    # the verdict first, in words: where it is stale and which version those caches serve
    assert re.match(r"Stale on varnish and edge: they serve the version from \d\d:\d\d UTC; "
                    r"the origin serves a newer one\.\n", result.reply), result.reply
    assert result.results == [] and result.plan == []
    assert "$10" in through_edge(fresh_stack, "/pricing").text  # still stale: check never purges


def test_help_names_sites_and_approvers(make_agent):
    result = make_agent().ask("help", user="bob")
    assert result.intent == Intent.HELP
    assert "shop (shop.example, www.shop.example)" in result.reply
    assert "alice" in result.reply


def test_bad_input_gets_a_clear_answer(make_agent):
    agent = make_agent()
    assert "Which page?" in agent.ask("", user="bob").reply
    assert "Which page?" in agent.ask("please clear the cache", user="bob").reply
    unknown = agent.ask("purge <https://www.shop.example.evil.net/x> and <javascript:alert(1)>", user="bob")
    assert unknown.urls == [] and unknown.plan == [] and len(unknown.rejected) == 2
    assert "www.shop.example.evil.net" in unknown.reply
    many = " ".join(f"https://shop.example/p/{i}" for i in range(5000))
    over = agent.ask(f"purge {many}", user="bob")
    assert over.urls == [] and over.plan == []
    assert "1,000" in over.rejected[0].reason and len(over.rejected) == 5000


def through_varnish(stack, path: str, host: str = "shop.example"):
    import httpx

    return httpx.get(stack.varnish_url + path, headers={"Host": host}, timeout=10)


def test_a_wildcard_link_waits_for_approval_then_clears_only_that_prefix(fresh_stack, make_agent):
    warm(fresh_stack, "/products/shoes/runner", "/products/hats/beanie", "/pricing")
    agent = make_agent()
    waiting = agent.ask("purge <https://shop.example/products/*>", user="bob")

    assert waiting.needs_approval and waiting.results == []
    assert waiting.pending["reason"] == ("https://shop.example/products/* clears every page under a prefix, and every "
                                         "wildcard purge needs approval")
    plan = {item.layer: item for item in waiting.plan}
    assert {item.operation for item in waiting.plan} == {Operation.PURGE_PREFIX}
    assert plan["edge"].skip.startswith("nginx's cache_purge has no wildcards")
    assert through_varnish(fresh_stack, "/products/shoes/runner").headers["X-Cache"] == "HIT"  # nothing sent yet

    done = agent.decide(waiting.thread_id, "approve", user="alice")
    got = statuses(done, "https://shop.example/products/*")
    assert got == {"appcache": ItemStatus.PURGED_VERIFIED, "varnish": ItemStatus.PURGED_UNVERIFIED,
                   "edge": ItemStatus.SKIPPED}
    varnish = next(r for r in done.results if r.layer == "varnish")
    assert varnish.evidence == "varnish cannot list the pages under a prefix to check them"
    assert through_varnish(fresh_stack, "/products/shoes/runner").headers["X-Cache"] == "MISS"
    assert through_varnish(fresh_stack, "/products/hats/beanie").headers["X-Cache"] == "MISS"
    assert through_varnish(fresh_stack, "/pricing").headers["X-Cache"] == "HIT"  # outside the prefix
    dry = make_agent(checkpoint="dry.sqlite").ask("purge <https://shop.example/products/*>", user="bob", dry_run=True)
    assert ("Scope: every page under https://shop.example/products/ (a wildcard: how many pages is not known) — on "
            "appcache, varnish; skipped on edge (nginx's cache_purge has no wildcards") in dry.reply


def test_the_whole_site_wildcard_is_purge_everything_with_approval(fresh_stack, make_agent):
    result = make_agent().ask("<https://shop.example/*>", user="bob", dry_run=True)
    assert {item.operation for item in result.plan} == {Operation.PURGE_ALL}
    assert {item.url for item in result.plan} == {"https://shop.example/"}
    waiting = make_agent(checkpoint="other.sqlite").ask("<https://shop.example/*>", user="bob")
    assert waiting.pending["reason"] == "purging everything on a site always needs approval"


def test_a_tag_purge_counts_the_pages_it_clears(fresh_stack, make_agent):
    """/pricing's tag is on /pricing and / (both planned): 2 pages × 3 layers, not 2 + 1 + 2."""
    result = make_agent().ask(f"<{PRICING}>", user="bob", dry_run=True)
    varnish = {item.url: item for item in result.plan if item.layer == "varnish"}
    assert varnish[PRICING].target == "pricing" and varnish[PRICING].clears == 2
    assert result.reply.startswith("Dry run: nothing was purged. The plan: 6 purges over 2 pages")
    assert "Scope: tag pricing: clears the 2 pages of this plan that carry it" in result.reply


def test_check_says_fresh_everywhere_or_why_it_cannot_tell(fresh_stack, make_agent):
    warm(fresh_stack, "/pricing")  # the app cache holds the render the origin answers from
    unsure = make_agent().ask(f"is <{PRICING}> cached?", user="bob")
    assert unsure.reply.startswith("Can't tell beyond the app cache: the origin answers from appcache"), unsure.reply

    fresh_stack.flush_app_cache()  # now the origin renders afresh: the HTTP caches can be compared with it
    fresh = make_agent().ask(f"is <{PRICING}> cached?", user="bob")
    assert fresh.reply.startswith("Fresh everywhere.\n"), fresh.reply
