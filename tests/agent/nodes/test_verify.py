"""Verification catches an outer cache that refilled from a not-yet-purged inner one, and repairs it once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from agent.cli.output import exit_code
from agent.storage.audit import AuditStore
from agent.config import parse_config
from agent.layers import build_layer
from agent.layers.base import Verification
from agent.layers.nginx import NginxLayer
from agent.layers.varnish import VarnishLayer
from agent.models import Intent, ItemStatus, Operation, PlanItem, PurgeOutcome, PurgeStatus, RunResult
from agent.nodes import common
from agent.nodes.common import judge
from agent.nodes.verify import items_to_repair, route_after_verify
from agent.service.agent import Agent
from agent.state import AgentContext
from tests.agent.conftest import through_edge, warm


class SlowVarnish(VarnishLayer):
    """Real Varnish whose purges arrive late, as they do when its API is busy."""

    async def purge_tags(self, tags):
        await asyncio.sleep(0.5)
        return await super().purge_tags(tags)

    async def purge_urls(self, urls):
        await asyncio.sleep(0.5)
        return await super().purge_urls(urls)


class EdgeWithVisitors(NginxLayer):
    """Real nginx, and a visitor who asks for each page right after the edge purge (before Varnish's)."""

    async def purge_urls(self, urls):
        outcomes = await super().purge_urls(urls)
        for url in urls:
            await self.observe(url)  # a MISS at the edge refills it from Varnish, which is still stale
        return outcomes


def racing_layers(config):
    if config.kind == "varnish":
        return SlowVarnish(config)
    if config.kind == "nginx":
        return EdgeWithVisitors(config)
    return build_layer(config)


def test_page_refilled_stale_by_a_visitor_is_purged_again_and_verified(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing", "/")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    config = parse_config(fresh_stack.config_dict())
    context = AgentContext(config=config, layer_factory=racing_layers)
    with Agent(config, context=context, checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        result = agent.ask("old price on https://shop.example/pricing", user="bob")
        outcomes = agent.graph.get_state({"configurable": {"thread_id": result.thread_id}}).values["purge_outcomes"]

    edge = next(r for r in result.results if r.url.endswith("/pricing") and r.layer == "edge")
    assert edge.status == ItemStatus.PURGED_VERIFIED
    assert edge.attempts >= 2  # the first pass and the repair pass
    assert any(o.repaired and o.layer == "edge" for o in outcomes)
    assert "$12" in through_edge(fresh_stack, "/pricing").text


PRICING = "https://shop.example/pricing"


def edge_item() -> PlanItem:
    return PlanItem(url=PRICING, site="shop", layer="edge", operation=Operation.PURGE_URL, target=PRICING,
                    reason="you asked for this page", requested=True)


def found_stale_in_audit(result, item: PlanItem, tmp_path) -> int:
    """How many results the audit statistics count as stale after purge, with ``result`` recorded."""
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    at = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    request_id = store.request_received(thread_id="t", user="bob", interface="cli", channel=None,
                                        text=f"purge {PRICING}", dry_run=False, at=at)
    store.request_updated(request_id, RunResult(thread_id="t", intent=Intent.PURGE, reply="", urls=[PRICING],
                                                plan=[item], pages=[PRICING], results=[result]), at=at)
    stale = sum(row["stale"] for row in store.stats()["per_site_layer"])
    store.close()
    return stale


def test_rewording_the_stale_message_changes_neither_the_repair_nor_the_statistics(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "STILL_STALE", "yet visitors still get the old page")
    item = edge_item()
    accepted = PurgeOutcome(layer="edge", operation=Operation.PURGE_URL, target=PRICING, status=PurgeStatus.PURGED,
                            attempts=1)
    stale = judge(item, accepted, Verification(False, "still stale: HIT, body differs from origin"))

    assert stale.detail == "purge accepted, yet visitors still get the old page"
    assert stale.status == ItemStatus.FAILED and stale.stale_after_purge
    assert items_to_repair([item], [stale]) == [item]
    assert route_after_verify({"repair": items_to_repair([item], [stale])}) == "execute"
    assert found_stale_in_audit(stale, item, tmp_path) == 1


def test_a_failed_purge_is_not_stale_after_purge_whatever_its_words_say(tmp_path):
    item = edge_item()
    refused = PurgeOutcome(layer="edge", operation=Operation.PURGE_URL, target=PRICING, status=PurgeStatus.FAILED,
                           detail="the edge answered: but it still serves stale content")
    failed = judge(item, refused, None)

    assert failed.status == ItemStatus.FAILED and not failed.stale_after_purge
    assert items_to_repair([item], [failed]) == []
    assert route_after_verify({"repair": items_to_repair([item], [failed])}) == "report"
    assert found_stale_in_audit(failed, item, tmp_path) == 0


# --- whatever the origin answers now: deleted pages, redirects, a failing origin --------------------------------

DELETED = [f"/products/retired/item-{n}" for n in range(25)]


def agent_on(stack, tmp_path, **approval) -> Agent:
    data = stack.config_dict()
    data["approval"] = {**data["approval"], "threshold": 1000, **approval}
    config = parse_config(data)
    return Agent(config, context=AgentContext(config=config), checkpoint_path=str(tmp_path / "s.sqlite"))


def test_25_deleted_pages_are_verified_gone_from_every_cache_and_exit_0(fresh_stack, tmp_path):
    for path in DELETED:
        fresh_stack.content.edit(path, "A product we no longer sell.")
    warm(fresh_stack, *DELETED)  # every cache holds the old 200
    for n, path in enumerate(DELETED):  # some deleted outright (404), some marked gone (410)
        fresh_stack.content.delete(path) if n % 2 else fresh_stack.content.retire(path)
    urls = " ".join(f"<https://shop.example{path}>" for path in DELETED)
    with agent_on(fresh_stack, tmp_path) as agent:
        result = agent.ask(f"we took these down but they still show: {urls}", user="bob")

    deleted = [r for r in result.results if r.url.removeprefix("https://shop.example") in DELETED]
    assert len(deleted) == 25 * 3
    assert {r.status for r in deleted} <= {ItemStatus.PURGED_VERIFIED, ItemStatus.NOT_CACHED}
    http = [r for r in deleted if r.layer != "appcache"]
    assert all(r.origin_status in (404, 410) and "deleted page: gone" in r.evidence for r in http)
    assert exit_code(result) == 0
    assert "cannot compare" not in result.reply and "NOT confirmed" not in result.reply
    assert {through_edge(fresh_stack, path).status_code for path in DELETED} == {404, 410}


def test_a_redirected_page_is_verified_when_status_and_location_match(fresh_stack, tmp_path):
    warm(fresh_stack, "/about")
    fresh_stack.content.retire("/about", redirect_to="/pricing")
    with agent_on(fresh_stack, tmp_path) as agent:
        result = agent.ask("the about page should redirect now: <https://shop.example/about>", user="bob")

    about = {r.layer: r for r in result.results if r.url == "https://shop.example/about"}
    assert about["varnish"].status == about["edge"].status == ItemStatus.PURGED_VERIFIED
    assert "redirect matches origin (HTTP 301 to /pricing)" in about["edge"].evidence
    assert exit_code(result) == 0
    answer = through_edge(fresh_stack, "/about")
    assert (answer.status_code, answer.headers["location"]) == (301, "/pricing")


def test_a_failing_origin_leaves_pages_unverified_never_failed(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    content = fresh_stack.content.path
    content.rename(content.with_suffix(".away"))  # the origin loses its content: every page answers HTTP 500
    try:
        with agent_on(fresh_stack, tmp_path) as agent:
            result = agent.ask(f"purge <{PRICING}>", user="bob")
    finally:
        content.with_suffix(".away").rename(content)

    pricing = {r.layer: r for r in result.results if r.url == PRICING}
    assert pricing["varnish"].status == pricing["edge"].status == ItemStatus.PURGED_UNVERIFIED
    assert "the origin itself is failing: 500" in pricing["edge"].evidence
    assert pricing["edge"].origin_status == 500
    assert not any(r.stale_after_purge or r.status == ItemStatus.FAILED for r in result.results)


# --- assets: compared by a hash of the streamed body, within limits.max_body_bytes -----------------------------

STYLESHEET = "https://shop.example/static/shop.css"


def test_an_edited_stylesheet_is_verified_fresh_by_its_body(fresh_stack, tmp_path):
    warm(fresh_stack, "/static/shop.css")
    fresh_stack.content.edit("/static/shop.css", "body { color: #c00; }\n")
    with agent_on(fresh_stack, tmp_path) as agent:
        result = agent.ask(f"the old colours still show: <{STYLESHEET}>", user="bob")

    css = {r.layer: r for r in result.results if r.url == STYLESHEET}
    assert {r.status for r in css.values()} == {ItemStatus.PURGED_VERIFIED}
    assert "matches origin" in css["edge"].evidence
    answer = through_edge(fresh_stack, "/static/shop.css")
    assert answer.text == "body { color: #c00; }\n" and answer.headers["content-type"].startswith("text/css")


def test_an_asset_over_the_byte_cap_is_compared_by_its_first_bytes_and_headers(fresh_stack, tmp_path):
    big = "".join(f".rule-{n} {{ margin: {n}px; }}\n" for n in range(20_000))  # ~500 KiB, cap 1 KiB
    fresh_stack.content.edit("/static/shop.css", big)
    warm(fresh_stack, "/static/shop.css")
    fresh_stack.content.edit("/static/shop.css", big + ".new { color: red; }\n")  # differs after the cap only
    data = fresh_stack.config_dict()
    data["approval"] = {**data["approval"], "threshold": 1000}
    data["limits"] = {**data["limits"], "max_body_bytes": 1024}
    config = parse_config(data)
    with Agent(config, context=AgentContext(config=config), checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        result = agent.ask(f"purge <{STYLESHEET}>", user="bob")

    edge = next(r for r in result.results if r.url == STYLESHEET and r.layer == "edge")
    assert edge.status == ItemStatus.PURGED_VERIFIED, edge.evidence
    # Varnish fetches the stylesheet gzipped and inflates it for an identity look, weakening its ETag: then
    # Last-Modified vouches for the rest
    assert "the first 1 KiB and " in edge.evidence and "only the first 1 KiB compared" in edge.evidence


def test_a_stale_asset_over_the_byte_cap_is_found_by_its_headers_reading_only_the_cap(fresh_stack):
    import httpx

    from agent.layers.probe import FetchLimits, fetch_limits, observe_http

    big = "".join(f".rule-{n} {{ margin: {n}px; }}\n" for n in range(20_000))
    fresh_stack.content.edit("/static/shop.css", big)
    warm(fresh_stack, "/static/shop.css")
    fresh_stack.content.edit("/static/shop.css", big + ".new { color: red; }\n")
    fresh_stack.flush_app_cache()  # the origin serves the new file; Varnish still holds the old one
    config = parse_config(fresh_stack.config_dict())
    varnish = build_layer(next(layer for layer in config.layers if layer.name == "varnish"))

    async def look():
        with fetch_limits(FetchLimits(max_body_bytes=1024)):
            async with httpx.AsyncClient() as client:
                origin = await observe_http(client, fresh_stack.origin_url, STYLESHEET)
            try:
                return origin, await varnish.verify(STYLESHEET, origin)
            finally:
                await varnish.aclose()

    origin, verdict = asyncio.run(look())
    assert origin.body_capped and origin.body_bytes == 1024  # the rest of the file was never read
    # Varnish's inflated copy has a weak ETag: Last-Modified or Content-Length (same second: same date) tell
    assert verdict.verified is False and ("Last-Modified" in verdict.evidence or "Content-Length" in verdict.evidence)


# --- variants: every configured header set is looked at, a stale one is named ---------------------------------

VARIANTS = [{"Accept-Encoding": "gzip"}, {"User-Agent": "mobile"}]


def with_variants(stack) -> dict:
    data = stack.config_dict()
    data["sites"][0]["variants"] = VARIANTS
    return data


def test_every_configured_variant_is_verified_after_a_purge(fresh_stack, tmp_path):
    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    config = parse_config(with_variants(fresh_stack))
    with Agent(config, context=AgentContext(config=config), checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        result = agent.ask(f"purge <{PRICING}>", user="bob")

    pricing = {r.layer: r for r in result.results if r.url == PRICING}
    assert pricing["varnish"].status == pricing["edge"].status == ItemStatus.PURGED_VERIFIED
    assert "(variants Accept-Encoding: gzip; User-Agent: mobile too)" in pricing["edge"].evidence


def test_a_variant_left_stale_is_found_and_named(fresh_stack):
    from agent.nodes.verify import verify_items

    warm(fresh_stack, "/pricing")
    fresh_stack.content.edit("/pricing", "Pro plan: $12/month.")
    fresh_stack.flush_app_cache()  # the origin serves the new price; Varnish was never purged
    config = parse_config(with_variants(fresh_stack))
    item = PlanItem(url=PRICING, site="shop", layer="varnish", operation=Operation.PURGE_URL, target=PRICING,
                    reason="you asked for this page", requested=True)
    said = PurgeOutcome(layer="varnish", operation=Operation.PURGE_URL, target=PRICING, status=PurgeStatus.PURGED,
                        attempts=1)
    [result] = asyncio.run(verify_items([item], {("varnish", PRICING): said}, AgentContext(config=config)))

    assert result.status == ItemStatus.FAILED and result.stale_after_purge
    assert "variant Accept-Encoding: gzip still stale" in result.evidence
    assert "variant User-Agent: mobile still stale" in result.evidence


def test_a_variant_header_cannot_be_host_or_span_lines():
    import pytest

    data = {"sites": [{"name": "s", "hosts": ["s.example"], "layers": ["v"], "variants": [{"Host": "x"}]}],
            "layers": [{"name": "v", "kind": "varnish", "endpoint": "http://127.0.0.1:6081"}]}
    with pytest.raises(Exception, match="not a header a variant can set"):
        parse_config(data)
    data["sites"][0]["variants"] = [{"User-Agent": "a\r\nX: y"}]
    with pytest.raises(Exception, match="must be one line"):
        parse_config(data)


# --- the demo's stylesheet: an identity and a gzip variant, in Varnish and nginx --------------------------------

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def css_through_edge(stack, encoding: dict):
    import httpx

    return httpx.get(stack.nginx_url + "/static/shop.css", headers={"Host": stack.host, **encoding}, timeout=10)


def warm_both_variants(stack) -> None:
    for encoding in (GZIP, IDENTITY, GZIP, IDENTITY):
        css_through_edge(stack, encoding)
    assert {css_through_edge(stack, e).headers["X-Cache-Status"] for e in (GZIP, IDENTITY)} == {"HIT"}


def test_a_purged_stylesheet_is_verified_fresh_in_both_variants_on_varnish_and_nginx(fresh_stack, tmp_path):
    warm_both_variants(fresh_stack)
    fresh_stack.content.edit("/static/shop.css", "body { color: #c00; }\n")
    with agent_on(fresh_stack, tmp_path) as agent:  # the demo config lists variants: [{Accept-Encoding: gzip}]
        result = agent.ask(f"the old colours still show: <{STYLESHEET}>", user="bob")

    css = {r.layer: r for r in result.results if r.url == STYLESHEET}
    assert css["varnish"].status == css["edge"].status == ItemStatus.PURGED_VERIFIED
    assert "(variants Accept-Encoding: gzip too)" in css["varnish"].evidence
    assert "(variants Accept-Encoding: gzip too)" in css["edge"].evidence
    gzipped, plain = css_through_edge(fresh_stack, GZIP), css_through_edge(fresh_stack, IDENTITY)
    assert gzipped.headers["content-encoding"] == "gzip" and gzipped.text == "body { color: #c00; }\n"
    assert "content-encoding" not in plain.headers and plain.text == "body { color: #c00; }\n"


class EdgeWithGzipVisitor(NginxLayer):
    """Real nginx, and a browser (gzip) asking for each page right after the edge purge, before Varnish's."""

    async def purge_urls(self, urls):
        from agent.layers.probe import looking_as

        outcomes = await super().purge_urls(urls)
        with looking_as(GZIP):
            for url in urls:
                await self.observe(url)  # the gzip variant refills from Varnish, which still serves the old file
        return outcomes


class EdgeDeafToVariants(EdgeWithGzipVisitor):
    """The same, purging as nginx layers did before: without the variants' headers."""

    async def purge_urls(self, urls):
        self.variants = {}
        return await super().purge_urls(urls)


def gzip_race(edge_class):
    def layers(config):
        if config.kind == "varnish":
            return SlowVarnish(config)
        if config.kind == "nginx":
            return edge_class(config)
        return build_layer(config)
    return layers


def purge_stylesheet_in_a_race(stack, tmp_path, edge_class):
    warm_both_variants(stack)
    stack.content.edit("/static/shop.css", "body { color: #c00; }\n")
    config = parse_config(stack.config_dict())
    context = AgentContext(config=config, layer_factory=gzip_race(edge_class))
    with Agent(config, context=context, checkpoint_path=str(tmp_path / "s.sqlite")) as agent:
        result = agent.ask(f"purge <{STYLESHEET}>", user="bob")
    return next(r for r in result.results if r.url == STYLESHEET and r.layer == "edge")


def test_a_stale_gzip_variant_on_nginx_is_repaired_with_its_headers_and_verified(fresh_stack, tmp_path):
    edge = purge_stylesheet_in_a_race(fresh_stack, tmp_path, EdgeWithGzipVisitor)

    assert edge.status == ItemStatus.PURGED_VERIFIED, edge.evidence
    assert edge.attempts >= 4  # identity + gzip in the first pass, both again in the repair
    assert css_through_edge(fresh_stack, GZIP).text == "body { color: #c00; }\n"


def test_a_repair_without_the_variant_headers_would_leave_it_stale(fresh_stack, tmp_path):
    edge = purge_stylesheet_in_a_race(fresh_stack, tmp_path, EdgeDeafToVariants)

    assert edge.status == ItemStatus.FAILED and edge.stale_after_purge
    assert "variant Accept-Encoding: gzip still stale" in edge.evidence
