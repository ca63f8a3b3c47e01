"""NginxLayer against the real nginx edge (ngx_cache_purge) of the local stack: MISS, HIT, purge, MISS.

nginx sits in front of Varnish, which sits in front of the origin (with its Redis app cache). To make the
origin serve an edit, a test drops the app-cache key and purges Varnish directly.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from agent.config import LayerConfig, validate_layer_options
from agent.layers.base import Capability
from agent.layers.nginx import NginxLayer
from tests.agent.layers.helpers import run
from tests.agent.layers.test_varnish import HOST, closed_port, fresh_origin, new_page, origin_observation


def make_layer(endpoint: str, **options) -> NginxLayer:
    return NginxLayer(LayerConfig(name="edge", kind="nginx", endpoint=endpoint, retries=1, options=options))


def change_behind_the_edge(stack, path: str, body: str) -> None:
    """Edit the page and make everything behind nginx serve the edit (app cache dropped, Varnish purged)."""
    stack.content.edit(path, body)
    fresh_origin(stack, path)
    httpx.request("PURGE", stack.varnish_url + path, headers={"Host": HOST}).raise_for_status()


@pytest.fixture
def layer(stack) -> NginxLayer:
    return make_layer(stack.nginx_url)


def test_miss_hit_purge_miss(stack, layer: NginxLayer) -> None:
    _, url = new_page(stack)

    async def scenario():
        first = await layer.observe(url)
        second = await layer.observe(url)
        purged = await layer.purge_urls([url])
        third = await layer.observe(url)
        again = await layer.purge_urls([url])  # the observe above re-cached it
        return first, second, purged, third, again

    first, second, purged, third, again = run(layer, scenario)
    assert (first.cache_status, second.cache_status, third.cache_status) == ("MISS", "HIT", "MISS")
    assert purged[url].status == "purged" and purged[url].attempts == 1
    assert again[url].status == "purged"


def test_query_string_variants_are_separate_keys(stack, layer: NginxLayer) -> None:
    _, url = new_page(stack)
    variant = url + "?utm=1"

    async def scenario():
        await layer.observe(variant)
        purged = await layer.purge_urls([url, variant])
        return purged

    purged = run(layer, scenario)
    assert purged[url].status == "not_cached"
    assert purged[variant].status == "purged"


def test_verify_fresh_after_purge(stack, layer: NginxLayer) -> None:
    path, url = new_page(stack, "edge v1")

    async def scenario():
        await layer.observe(url)
        change_behind_the_edge(stack, path, "edge v2")
        origin = await origin_observation(stack, path)
        purged = await layer.purge_urls([url])
        return purged, await layer.verify(url, origin)

    purged, verification = run(layer, scenario)
    assert purged[url].status == "purged"
    assert verification.verified is True, verification
    assert verification.evidence.startswith("MISS→fresh")


def test_verify_reports_stale_when_not_purged(stack, layer: NginxLayer) -> None:
    path, url = new_page(stack, "edge v1")

    async def scenario():
        await layer.observe(url)
        change_behind_the_edge(stack, path, "edge v2")
        origin = await origin_observation(stack, path)
        return await layer.verify(url, origin)

    verification = run(layer, scenario)
    assert verification.verified is False
    assert verification.evidence.startswith("still stale: HIT")


def test_never_cached_url_is_not_cached(layer: NginxLayer) -> None:
    url = f"http://{HOST}/never-{uuid.uuid4().hex}"
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "not_cached" and "nothing to do" in outcome.detail


def test_wildcards_are_refused_without_a_request(layer: NginxLayer) -> None:
    url = f"http://{HOST}/products/*"
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "failed" and "wildcard" in outcome.detail and outcome.attempts == 0


def test_wrong_purge_prefix_is_not_mistaken_for_not_cached(stack) -> None:
    layer = make_layer(stack.nginx_url, purge_path_prefix="/no-such-purge")
    _, url = new_page(stack)
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "failed" and "purge location" in outcome.detail


def test_unreachable_nginx_fails_quickly_without_raising() -> None:
    port = closed_port()
    layer = make_layer(f"http://127.0.0.1:{port}")
    url = f"http://{HOST}/pricing"

    async def scenario():
        start = time.monotonic()
        outcome = (await layer.purge_urls([url]))[url]
        return outcome, await layer.verify(url, None), time.monotonic() - start

    outcome, verification, elapsed = run(layer, scenario)
    assert outcome.status == "failed" and outcome.attempts == 2
    assert outcome.detail == f"could not reach nginx at 127.0.0.1:{port}: connection refused or host unreachable after 2 attempts"
    assert verification.verified is None
    assert elapsed < 3


def test_capabilities_and_options() -> None:
    assert NginxLayer.capabilities == {Capability.PURGE_URL, Capability.VERIFY}
    layer = make_layer("http://127.0.0.1:8080")
    assert layer.options.purge_path_prefix == "/purge"
    assert layer.options.cache_status_header == "X-Cache-Status"
    with pytest.raises(ValueError, match=r"layers\[1\]\.options\.purge_path_prefix: .*starting with '/'"):
        validate_layer_options(1, LayerConfig(name="e", kind="nginx", endpoint="http://x",
                                              options={"purge_path_prefix": "purge"}))


def request_lines(stack, since: int, naming: str, at_least: int) -> list[str]:
    """Request lines naming ``naming`` that nginx logged after byte ``since`` of its access log, once there are
    ``at_least`` (nginx writes a line just after answering, so the last one may land a moment later)."""
    log = stack.nginx.workdir / "access.log"
    deadline = time.monotonic() + 5
    while True:
        found = re.findall(r'"([A-Z]+ \S+) HTTP/1\.[01]"', log.read_bytes()[since:].decode("latin-1"))
        lines = [line for line in found if naming in line]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines


def test_a_dot_segment_never_turns_the_purge_into_a_fetch(stack, layer: NginxLayer) -> None:
    # GET /purge/../about used to become GET /about: an ordinary 200, reported "purged" while nothing was
    path, url = new_page(stack)
    log = stack.nginx.workdir / "access.log"
    refused = [f"http://{HOST}/..{path}", f"http://{HOST}/%2e%2e{path}", f"http://{HOST}/a/..%2F..{path}"]

    async def scenario():
        await layer.observe(url)
        outcomes = await layer.purge_urls(refused)
        still = await layer.observe(url)
        normalised = await layer.purge_urls([f"http://{HOST}/x/..{path}"])
        gone = await layer.observe(url)
        return outcomes, still, normalised, gone

    since = log.stat().st_size
    outcomes, still, normalised, gone = run(layer, scenario)
    for bad in refused:
        assert outcomes[bad].status == "failed" and outcomes[bad].detail.startswith("not sent: ")
    assert still.cache_status == "HIT"  # nothing was purged, and nothing claimed it was
    assert list(normalised.values())[0].status == "purged" and gone.cache_status == "MISS"
    lines = request_lines(stack, since, naming=path, at_least=4)
    # the page fetched, fetched again (HIT), purged once by its own path, fetched (MISS): nothing else reached nginx
    assert lines == [f"GET {path}", f"GET {path}", f"GET /purge{path}", f"GET {path}"]


# --- variants: one purge drops the variant its own headers name ----------------------------------------------

GZIP = {"Accept-Encoding": "gzip"}


def test_a_purge_drops_every_configured_variant_of_a_stylesheet(fresh_stack, layer: NginxLayer) -> None:
    """The demo's nginx keeps a stylesheet twice (gzip and identity): a purge sent once per configured variant
    leaves neither; one sent without the variant's headers leaves the gzip one cached."""
    from agent.layers.probe import looking_as

    url = f"https://{HOST}/static/shop.css"

    async def looks():
        plain = await layer.observe(url)
        with looking_as(GZIP):
            gzipped = await layer.observe(url)
        return plain.cache_status, gzipped.cache_status

    async def scenario(variants):
        await looks(), await looks()  # both variants cached: HIT, HIT
        cached = await looks()
        layer.variants = variants
        purged = await layer.purge_urls([url])
        return cached, purged[url], await looks()

    cached, purged, after = run(layer, lambda: scenario({}))
    assert cached == ("HIT", "HIT")
    assert purged.status == "purged" and after == ("MISS", "HIT")  # the gzip variant was left in the cache

    cached, purged, after = run(layer, lambda: scenario({HOST: [GZIP]}))
    assert cached == ("HIT", "HIT")
    assert purged.status == "purged" and purged.attempts == 2 and after == ("MISS", "MISS")
