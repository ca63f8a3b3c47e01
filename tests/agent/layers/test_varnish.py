"""VarnishLayer against the real Varnish of the local stack (FOSHttpCache style: MISS, HIT, purge, MISS).

Each test makes its own pages (unique paths in the content store), so no cache restarts are needed and tests
do not disturb each other. The origin keeps an app cache in Redis: ``fresh_origin`` deletes a page's key so
the origin serves an edit.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import TypeVar

import httpx
import pytest

from agent.config import LayerConfig, validate_layer_options
from agent.layers.base import Capability, Observation
from agent.layers.probe import body_hash
from agent.layers.varnish import VarnishLayer
from agent.urls import wire_path
from tests.agent.layers.helpers import run

T = TypeVar("T")
HOST = "shop.example"


def make_layer(endpoint: str, **options) -> VarnishLayer:
    return VarnishLayer(LayerConfig(name="varnish", kind="varnish", endpoint=endpoint, retries=1, options=options))


def new_page(stack, body: str = "first version") -> tuple[str, str]:
    path = f"/t-{uuid.uuid4().hex[:10]}"
    stack.content.edit(path, body)
    return path, f"http://{HOST}{path}"


def fresh_origin(stack, path: str) -> None:
    """Drop the origin's own app-cache entry so it renders the current content."""
    client = stack.redis_client()
    try:
        client.delete(f"demo:page:{HOST}{path}", f"demo:meta:{HOST}{path}")
    finally:
        client.close()


async def origin_observation(stack, path: str) -> Observation:
    async with httpx.AsyncClient() as client:
        response = await client.get(stack.origin_url + path, headers={"Host": HOST})
    return Observation(True, response.status_code, None, response.headers.get("ETag"),
                       response.headers.get("Last-Modified"), body_hash(response.content))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def layer(stack) -> VarnishLayer:
    return make_layer(stack.varnish_url)


def test_miss_hit_purge_miss(stack, layer: VarnishLayer) -> None:
    _, url = new_page(stack)

    async def scenario():
        first = await layer.observe(url)
        second = await layer.observe(url)
        purged = await layer.purge_urls([url])
        third = await layer.observe(url)
        return first, second, purged, third

    first, second, purged, third = run(layer, scenario)
    assert (first.cache_status, second.cache_status) == ("MISS", "HIT")
    assert second.etag and second.etag == first.etag and second.body_hash == first.body_hash
    assert second.tags  # the page's tags from the xkey header
    assert purged[url].status == "purged" and purged[url].detail == "purged 1 object"
    assert purged[url].attempts == 1
    assert third.cache_status == "MISS"


def test_a_dot_segment_purges_the_page_it_names_or_nothing(stack, layer: VarnishLayer) -> None:
    # Varnish keys on the URL as sent: a purge must name the page the way a browser asks for it
    path, url = new_page(stack)
    refused = [f"http://{HOST}/..{path}", f"http://{HOST}/%2E%2E{path}", f"http://{HOST}/a%2F..%2F..{path}"]

    async def scenario():
        await layer.observe(url)
        outcomes = await layer.purge_urls(refused)
        still = await layer.observe(url)
        purged = await layer.purge_urls([f"http://{HOST}/x/%2e%2e{path}"])
        gone = await layer.observe(url)
        return outcomes, still, purged, gone

    outcomes, still, purged, gone = run(layer, scenario)
    assert all(outcomes[bad].status == "failed" and outcomes[bad].attempts == 0 for bad in refused)
    assert still.cache_status == "HIT"
    assert list(purged.values())[0].detail == "purged 1 object" and gone.cache_status == "MISS"


def test_verify_fresh_after_purge(stack, layer: VarnishLayer) -> None:
    path, url = new_page(stack, "old price $10")

    async def scenario():
        await layer.observe(url)  # cached
        stack.content.edit(path, "new price $12")
        fresh_origin(stack, path)
        origin = await origin_observation(stack, path)
        purged = await layer.purge_urls([url])
        return purged, await layer.verify(url, origin)

    purged, verification = run(layer, scenario)
    assert purged[url].status == "purged"
    assert verification.verified is True, verification
    assert verification.evidence.startswith("MISS→fresh (ETag")


def test_verify_reports_stale_when_not_purged(stack, layer: VarnishLayer) -> None:
    path, url = new_page(stack, "old price $10")

    async def scenario():
        await layer.observe(url)
        stack.content.edit(path, "new price $12")
        fresh_origin(stack, path)
        origin = await origin_observation(stack, path)
        return await layer.verify(url, origin)

    verification = run(layer, scenario)
    assert verification.verified is False
    assert verification.evidence.startswith("still stale: HIT, ETag")
    assert "≠" in verification.evidence


def test_never_cached_url_is_not_cached(stack, layer: VarnishLayer) -> None:
    url = f"http://{HOST}/never-{uuid.uuid4().hex}"
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "not_cached"


def test_tag_purge_clears_the_listing_page_too(stack, layer: VarnishLayer) -> None:
    category, slug = f"c{uuid.uuid4().hex[:8]}", f"p{uuid.uuid4().hex[:8]}"
    product = f"http://{HOST}/products/{category}/{slug}"
    listing = f"http://{HOST}/products/{category}"
    stack.content.edit(f"/products/{category}/{slug}", "A test product. Price: $1.")

    async def scenario():
        for url in (product, listing):
            await layer.observe(url)
        cached = [(await layer.observe(url)).cache_status for url in (product, listing)]
        tags = (await layer.observe(product)).tags
        purged = await layer.purge_tags([f"product-{slug}", f"nothing-{slug}"])
        after = [(await layer.observe(url)).cache_status for url in (product, listing)]
        return cached, tags, purged, after

    cached, tags, purged, after = run(layer, scenario)
    assert cached == ["HIT", "HIT"]
    assert f"product-{slug}" in tags
    assert purged[f"product-{slug}"].status == "purged"
    assert "2 objects" in purged[f"product-{slug}"].detail
    assert after == ["MISS", "MISS"]


def test_tag_purge_one_tag_per_request_gives_exact_counts(stack) -> None:
    layer = VarnishLayer(LayerConfig(name="varnish", kind="varnish", endpoint=stack.varnish_url, max_batch=1))
    _, url = new_page(stack)

    async def scenario():
        await layer.observe(url)
        tag = (await layer.observe(url)).tags[0]
        return tag, await layer.purge_tags([tag, f"absent-{uuid.uuid4().hex}"])

    tag, purged = run(layer, scenario)
    assert purged[tag].status == "purged" and purged[tag].detail == "purged 1 object"
    (absent,) = [outcome for key, outcome in purged.items() if key != tag]
    assert absent.status == "not_cached"


def test_soft_purge_is_verified_by_content_not_by_miss(stack) -> None:
    layer = make_layer(stack.varnish_url, soft_purge=True)
    path, url = new_page(stack, "soft v1")

    async def scenario():
        await layer.observe(url)
        tag = (await layer.observe(url)).tags[0]
        stack.content.edit(path, "soft v2")
        fresh_origin(stack, path)
        origin = await origin_observation(stack, path)
        purged = await layer.purge_tags([tag])
        return purged[tag], await layer.verify(url, origin)

    outcome, verification = run(layer, scenario)
    assert outcome.status == "purged" and outcome.detail.startswith("soft-purged")
    assert verification.verified is True, verification


def test_ban(stack, layer: VarnishLayer) -> None:
    _, url = new_page(stack)
    path = url.removeprefix(f"http://{HOST}")

    async def scenario():
        await layer.observe(url)
        hit = (await layer.observe(url)).cache_status
        bad = await layer.ban(HOST, "((unclosed")
        banned = await layer.ban(HOST, "^" + path + "$")
        return hit, bad, banned, (await layer.observe(url)).cache_status

    hit, bad, banned, after = run(layer, scenario)
    assert hit == "HIT"
    assert bad.status == "failed" and "not a valid regular expression" in bad.detail and bad.attempts == 0
    assert banned.status == "purged"
    assert after == "MISS"


def test_unreachable_varnish_fails_quickly_without_raising() -> None:
    port = closed_port()
    layer = make_layer(f"http://127.0.0.1:{port}")
    url = f"http://{HOST}/pricing"

    async def scenario():
        start = time.monotonic()
        urls = await layer.purge_urls([url])
        tags = await layer.purge_tags(["pricing"])
        verification = await layer.verify(url, None)
        return urls, tags, verification, time.monotonic() - start

    urls, tags, verification, elapsed = run(layer, scenario)
    for outcome in (urls[url], tags["pricing"]):
        assert outcome.status == "failed"
        assert outcome.attempts == 2
        assert outcome.detail.startswith(f"could not reach varnish at 127.0.0.1:{port}: connection refused")
        assert "after 2 attempts" in outcome.detail
    assert verification.verified is None and verification.evidence.startswith("could not reach varnish")
    assert elapsed < 3


def test_capabilities_and_config_checks() -> None:
    assert VarnishLayer.capabilities == {
        Capability.PURGE_URL, Capability.PURGE_TAG, Capability.PURGE_PREFIX, Capability.BAN, Capability.PURGE_ALL,
        Capability.VERIFY,
    }
    ok = LayerConfig(name="v", kind="varnish", endpoint="http://127.0.0.1:6081", options={"soft_purge": True})
    validate_layer_options(0, ok)
    with pytest.raises(ValueError, match=r"layers\[2\]\.endpoint: a varnish layer needs an http"):
        validate_layer_options(2, LayerConfig(name="v", kind="varnish", endpoint="127.0.0.1:6081"))
    with pytest.raises(ValueError, match=r"layers\[0\]\.options\.softpurge"):
        validate_layer_options(0, LayerConfig(name="v", kind="varnish", endpoint="http://x", options={"softpurge": 1}))
    with pytest.raises(ValueError, match=r"purge_method"):
        validate_layer_options(0, LayerConfig(name="v", kind="varnish", endpoint="http://x",
                                              options={"purge_method": "PURGE ME"}))


def test_ban_regex_varnish_rejects_maps_to_a_clear_failure(stack, layer: VarnishLayer) -> None:
    # Python's re accepts an unknown POSIX class (as a plain set); PCRE refuses it: Varnish answers 400.
    outcome = run(layer, lambda: layer.ban(HOST, "^/[[:nosuchclass:]]"))
    assert outcome.status == "failed", outcome
    assert outcome.detail.startswith("varnish rejected the ban '^/[[:nosuchclass:]]': ")
    assert outcome.attempts == 1
    spaced = run(layer, lambda: layer.ban(HOST, "^/a b"))
    assert spaced.status == "failed" and "without spaces" in spaced.detail and spaced.attempts == 0


def test_prefix_purge_bans_exactly_the_pages_under_it_on_that_host(stack, layer: VarnishLayer) -> None:
    """The prefix is anchored and matched literally: a sibling directory, a path where '.' would match any
    character as a regex, and the same path on the site's other host all stay cached."""
    base = f"/t-{uuid.uuid4().hex[:10]}"
    under = [f"{base}.v/a", f"{base}.v/b/c?x=1"]
    kept = [f"{base}Xv/a", f"{base}.vx/a", f"{base}/a"]
    for path in under + kept:
        stack.content.edit(path.split("?")[0], "cached")
    urls = [f"http://{HOST}{p}" for p in under + kept]
    other_host = f"http://www.{HOST}{under[0]}"

    async def scenario():
        for url in [*urls, other_host]:
            await layer.observe(url)
        outcome = await layer.purge_prefixes([f"http://{HOST}{base}.v/*"])
        return outcome, {url: (await layer.observe(url)).cache_status for url in [*urls, other_host]}

    outcome, status = run(layer, scenario)
    assert outcome[f"http://{HOST}{base}.v/*"].status == "purged"
    assert outcome[f"http://{HOST}{base}.v/*"].detail == f"banned every URL under {base}.v/ on {HOST}"
    assert [status[f"http://{HOST}{p}"] for p in under] == ["MISS", "MISS"]
    assert [status[f"http://{HOST}{p}"] for p in kept] == ["HIT", "HIT", "HIT"]
    assert status[other_host] == "HIT"


def test_prefix_with_regex_and_ban_syntax_characters_is_matched_literally(stack, layer: VarnishLayer) -> None:
    base = f"/t-{uuid.uuid4().hex[:10]}"
    odd = f"{base}/a+b(c)[d]$e|f&&g"
    url, lookalike = f"http://{HOST}{odd}/p", f"http://{HOST}{base}/aab(c)[d]$e|f&&g/p"
    for page in (url, lookalike):  # the origin sees the path as sent: normalised, '[' ']' '|' percent-encoded
        stack.content.edit(wire_path(page)[1], "cached")  # the look-alike: what an unescaped '+' would match

    async def scenario():
        for page in (url, lookalike):
            await layer.observe(page)
        outcome = await layer.purge_prefixes([f"http://{HOST}{odd}/*"])
        return outcome, (await layer.observe(url)).cache_status, (await layer.observe(lookalike)).cache_status

    outcome, page, other = run(layer, scenario)
    assert [o.status for o in outcome.values()] == ["purged"]
    assert (page, other) == ("MISS", "HIT")


def test_a_malformed_prefix_is_refused_before_anything_is_sent(layer: VarnishLayer) -> None:
    bad = {f"http://{HOST}/a*b": "must end in its only '*'", f"http://{HOST}/a?x=*": "no query string",
           f"http://{HOST}/a": "must end in its only '*'"}
    outcomes = run(layer, lambda: layer.purge_prefixes(list(bad)))
    for prefix, words in bad.items():
        assert outcomes[prefix].status == "failed" and outcomes[prefix].attempts == 0 and words in outcomes[prefix].detail
