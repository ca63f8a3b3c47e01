"""Hostile input, issue 9 items 3 and 4: a request must never purge more than its plan says, and every scope
wider than the listed pages is shown and approved.

3. A wildcard link (``<https://shop.example/*>``, the form a Slack link arrives in) purged a whole CDN, counted
   as one purge, without approval.
4. Tag purges crossed sites (two sites on one Varnish) and scopes (a site-wide tag listed first turned a page
   purge into a whole-site purge without approval).

The CDN side is the loopback Cloudflare API (tests/fakes), which records every request; Varnish, Redis and nginx
are the real local stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from agent.config import parse_config
from agent.models import Operation
from agent.service.agent import Agent
from agent.state import AgentContext
from tests.agent.conftest import Clock, clock, make_agent  # noqa: F401 (fixtures)
from tests.agent.conftest import warm
from tests.fakes import FakeCloudflare, FakeEdge

SHOP = "https://shop.example"


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare()
    yield fake
    fake.close()


@pytest.fixture
def origin() -> Iterator[FakeEdge]:
    """The site's origin: serves pages with the cache tags a test gives them (in ``Cache-Tag``)."""
    fake = FakeEdge()
    yield fake
    fake.close()


@pytest.fixture
def cdn_agent(cf, origin, tmp_path) -> Iterator[callable]:
    """An Agent for one site behind Cloudflare (the fake API) and an nginx edge that is never reached."""
    agents: list[Agent] = []

    def build(site: dict | None = None, **sections) -> Agent:
        data = {
            "sites": [{"name": "shop", "hosts": ["shop.example"], "origin": origin.url, "layers": ["cdn", "edge"],
                       **(site or {})}],
            "layers": [
                {"name": "cdn", "kind": "cloudflare", "endpoint": cf.url, "credentials": {"api_token": cf.token},
                 "options": {"zone_id": cf.zone_id}, "retries": 0},
                {"name": "edge", "kind": "nginx", "endpoint": "http://127.0.0.1:9", "retries": 0,
                 "timeout_seconds": 0.5},
            ],
            "approval": {"threshold": 20, "approvers": ["alice"]},
            "storage": {"sqlite_path": str(tmp_path / f"state{len(agents)}.sqlite")},
            **sections,
        }
        config = parse_config(data)
        agent = Agent(config, context=AgentContext(config=config, now=Clock()),
                      checkpoint_path=str(tmp_path / f"state{len(agents)}.sqlite"))
        agents.append(agent)
        return agent

    yield build
    for agent in agents:
        agent.close()


def sent(cf: FakeCloudflare) -> list[dict]:
    return [r.json for r in cf.requests]


# --- item 3: wildcards are scopes, shown and approved ------------------------------------------------------


def test_a_whole_site_wildcard_link_sends_nothing_until_approved_and_then_purges_everything(cdn_agent, cf):
    agent = cdn_agent()
    waiting = agent.ask(f"these are stale <{SHOP}/*>", user="bob")
    assert waiting.needs_approval and waiting.pending["reason"] == "purging everything on a site always needs approval"
    assert {item.operation for item in waiting.plan} == {Operation.PURGE_ALL}
    assert cf.requests == []  # before: a prefix purge of "shop.example/" went out at once, counted as one purge

    done = agent.decide(waiting.thread_id, "approve", user="alice")
    assert sent(cf) == [{"purge_everything": True}]
    assert {r.layer: r.status.value for r in done.results}["edge"] == "skipped"


def test_a_prefix_wildcard_needs_approval_whatever_the_count_and_is_shown_as_a_scope(cdn_agent, cf):
    agent = cdn_agent()
    waiting = agent.ask(f"<{SHOP}/products/*>", user="bob")
    assert waiting.pending["reason"] == (f"{SHOP}/products/* clears every page under a prefix, and every wildcard "
                                         "purge needs approval")
    cdn, edge = sorted(waiting.plan, key=lambda item: item.layer)
    assert (cdn.operation, cdn.target, cdn.skip) == (Operation.PURGE_PREFIX, f"{SHOP}/products/*", "")
    assert edge.skip == "nginx's cache_purge has no wildcards: list the pages one by one"
    assert cf.requests == []

    agent.decide(waiting.thread_id, "approve", user="alice")
    assert sent(cf) == [{"prefixes": ["shop.example/products/"]}]  # the prefix, never the zone


def test_many_small_wildcards_do_not_slip_under_the_threshold(cdn_agent, cf):
    links = " ".join(f"<{SHOP}/d{i}/*>" for i in range(5))
    waiting = cdn_agent().ask(f"purge {links}", user="bob")
    assert waiting.needs_approval and "and 2 more clear every page under a prefix" in waiting.pending["reason"]
    assert cf.requests == []


def test_a_deep_enough_prefix_may_run_when_the_operator_says_so_but_a_shallow_one_may_not(cdn_agent, cf):
    agent = cdn_agent(approval={"threshold": 20, "approvers": ["alice"], "prefix_min_depth": 2})
    deep = agent.ask(f"<{SHOP}/blog/2024/*>", user="bob")
    assert not deep.needs_approval and sent(cf) == [{"prefixes": ["shop.example/blog/2024/"]}]
    shallow = agent.ask(f"<{SHOP}/blog/20*>", user="bob")  # covers /blog/2024/... and /blog/2099/...: depth 1
    assert shallow.needs_approval and len(cf.requests) == 1


def test_cloudfront_collapsing_pages_into_a_directory_wildcard_is_a_scope_that_needs_approval(tmp_path):
    """collapse_wildcards_over widens 12 listed pages to everything under /products/shoes/: shown and approved."""
    config = parse_config({
        "sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["cf"]}],
        "layers": [{"name": "cf", "kind": "cloudfront", "endpoint": "http://127.0.0.1:9",
                    "options": {"distribution_id": "E1", "collapse_wildcards_over": 10}}],
        "storage": {"sqlite_path": str(tmp_path / "s.sqlite")},
    })
    with Agent(config, context=AgentContext(config=config, now=Clock()), checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        links = " ".join(f"<{SHOP}/products/shoes/p{i}>" for i in range(12))
        waiting = agent.ask(f"purge {links}", user="bob")
    assert waiting.needs_approval and waiting.results == []
    assert waiting.pending["reason"].startswith(f"{SHOP}/products/shoes/* clears every page under a prefix")
    assert {(i.operation, i.target) for i in waiting.plan} == {(Operation.PURGE_PREFIX, f"{SHOP}/products/shoes/*")}


# --- item 4: tags stay inside the site and the plan ---------------------------------------------------------


def test_a_site_wide_tag_listed_first_never_turns_a_page_purge_into_a_site_purge(cdn_agent, cf, origin):
    origin.set_page(f"{SHOP}/about", "about us", tags=["site", "about"])
    origin.set_page(f"{SHOP}/", "home", tags=["site", "home"])
    result = cdn_agent().ask(f"<{SHOP}/about>", user="bob")
    assert not result.needs_approval
    assert sent(cf) == [{"tags": ["about"]}]  # before: {"tags": ["site"]}, every page of the site


def test_a_page_whose_only_tag_is_site_wide_is_purged_by_url(cdn_agent, cf, origin):
    origin.set_page(f"{SHOP}/about", "about us", tags=["site"])
    origin.set_page(f"{SHOP}/", "home", tags=["site", "home"])
    result = cdn_agent().ask(f"<{SHOP}/about>", user="bob")
    assert sent(cf) == [{"files": [f"{SHOP}/about"]}]
    [cdn] = [item for item in result.plan if item.layer == "cdn"]
    assert cdn.note == f"{SHOP}/about is purged by URL, not by tag: site (also on {SHOP}/, which is not in this plan)"


def test_tags_the_site_marks_as_broad_are_never_used(cdn_agent, cf, origin):
    origin.set_page(f"{SHOP}/", "home", tags=["home"])
    origin.set_page(f"{SHOP}/about", "about us", tags=["all-pages", "section-info"])
    cdn_agent(site={"broad_tags": ["all-pages", "section-*"]}).ask(f"<{SHOP}/about>", user="bob")
    assert sent(cf) == [{"files": [f"{SHOP}/about"]}]


def test_a_page_flooding_its_tag_header_is_bounded_and_says_so(cdn_agent, cf, origin):
    origin.set_page(f"{SHOP}/", "home", tags=["home"])
    origin.set_page(f"{SHOP}/about", "about us", tags=[f"t{i}" for i in range(2000)])
    result = cdn_agent().ask(f"<{SHOP}/about>", user="bob")
    assert sent(cf) == [{"files": [f"{SHOP}/about"]}]
    assert ("advertises 2,000 cache tags, more than limits.max_tags_per_page (256): none of them is used, the page is "
            "purged by URL") in [i for i in result.plan if i.layer == "cdn"][0].note


def test_a_request_about_one_site_never_clears_the_other_sites_pages_through_a_shared_tag(fresh_stack, make_agent):
    """Two sites on one Varnish; both origins tag /pricing "pricing". Purging www's /pricing must leave
    shop.example's /pricing and home page (which carries "pricing" too) cached."""
    sites = fresh_stack.config_dict()["sites"]
    shop = {**sites[0], "hosts": ["shop.example"]}
    www = {**sites[0], "name": "www", "hosts": ["www.shop.example"]}
    warm(fresh_stack, "/pricing", "/")

    def varnish(path: str, host: str) -> str:
        return httpx.get(fresh_stack.varnish_url + path, headers={"Host": host}, timeout=10).headers["X-Cache"]

    for path in ("/pricing", "/"):
        varnish(path, "www.shop.example")
    result = make_agent(sites=[shop, www]).ask("<https://www.shop.example/pricing>", user="bob")

    assert {i.operation for i in result.plan if i.layer == "varnish"} == {Operation.PURGE_URL}
    purged = {(r.url, r.layer): r.status.value for r in result.results}
    assert purged[("https://www.shop.example/pricing", "varnish")] == "purged_verified"
    # before: the xkey purge of "pricing" dropped these too (nothing fetches them again before this look)
    assert varnish("/pricing", "shop.example") == "HIT" and varnish("/", "shop.example") == "HIT"


def test_a_star_that_is_not_a_trailing_wildcard_is_never_sent(cdn_agent, cf):
    """``?q=*`` used to reach Cloudflare as a prefix purge of ``shop.example/search?q=``. The URL screening may
    refuse it; if it gets through, the plan lists it as skipped on every layer."""
    for link in (f"<{SHOP}/search?q=*>", f"<{SHOP}/a*b>"):
        result = cdn_agent().ask(f"purge {link}", user="bob")
        assert not [r for r in result.results if r.status.value != "skipped"]
        skipped = [r.detail for r in result.results]
        assert result.rejected or (skipped and all("'*' is a wildcard only at the very end" in d for d in skipped))
    assert cf.requests == []
