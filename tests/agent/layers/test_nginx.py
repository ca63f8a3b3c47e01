"""NginxLayer against the real nginx edge (ngx_cache_purge) of the local stack: MISS, HIT, purge, MISS.

nginx sits in front of Varnish, which sits in front of the origin (with its Redis app cache). To make the
origin serve an edit, a test drops the app-cache key and purges Varnish directly.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from agent.config import LayerConfig
from agent.layers import validate_layer_options
from agent.layers.base import Capability
from agent.layers.nginx import NginxLayer
from tests.agent.layers.helpers import run
from tests.agent.layers.test_varnish import (
    HOST,
    closed_port,
    fresh_origin,
    new_page,
    origin_observation,
)


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
