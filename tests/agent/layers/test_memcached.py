"""MemcachedLayer against a real memcached: exact keys from templates, pipelined batches, verify, daemon down."""

from __future__ import annotations

import asyncio
import socket

import pytest

from agent.config import AppConfig, ConfigError, LayerConfig, parse_config, validate_layer_options
from agent.layers.base import Capability
from agent.layers.memcached import MemcachedLayer

HOST = "shop.example"


def make_layer(endpoint: str, templates: list[str], **extra) -> MemcachedLayer:
    options = {"key_templates": templates, **extra.pop("options", {})}
    extra.setdefault("retries", 1)
    return MemcachedLayer(LayerConfig(name="fragments", kind="memcached", endpoint=endpoint, options=options, **extra))


def run(coro):
    return asyncio.run(coro)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mc(memcached_client):
    return memcached_client


def test_purge_deletes_keys_then_verifies_gone(memcached_daemon, mc) -> None:
    layer = make_layer(memcached_daemon.url, ["page:{host}{path}", "meta:{url}"])
    url = "https://Shop.Example/a?x=1"
    mc.set("page:shop.example/a?x=1", b"old body")
    mc.set("meta:https://shop.example/a?x=1", b"{}")
    mc.set("page:shop.example/b", b"other")

    async def scenario():
        before = await layer.observe(url)
        purged = (await layer.purge_urls([url]))[url]
        verified = await layer.verify(url, None)
        after = await layer.observe(url)
        again = (await layer.purge_urls([url]))[url]
        return before, purged, verified, after, again

    before, purged, verified, after, again = run(scenario())
    assert before.reachable and before.cache_status == "HIT" and before.body_hash
    assert purged.status == "purged" and purged.detail == "deleted 2 keys" and purged.attempts == 1
    assert verified.verified is True and verified.evidence == "keys gone"
    assert after.cache_status == "MISS"
    assert again.status == "not_cached" and again.detail == "no key existed"
    assert mc.get("page:shop.example/b") == b"other"
    assert layer.supports(Capability.PURGE_URL) and layer.supports(Capability.VERIFY)
    assert not layer.supports(Capability.PURGE_TAG) and layer.verifies_against_origin is False


def test_many_urls_in_small_batches(memcached_daemon, mc) -> None:
    layer = make_layer(memcached_daemon.url, ["p:{host}{path_only}"], max_batch=3, concurrency=2)
    urls = [f"http://{HOST}/item-{i}" for i in range(20)]
    mc.set_many({f"p:{HOST}/item-{i}": b"x" for i in range(0, 20, 2)})
    results = run(layer.purge_urls(urls))
    assert [results[u].status for u in urls] == ["purged", "not_cached"] * 10
    assert mc.get_many([f"p:{HOST}/item-{i}" for i in range(20)]) == {}


def test_verify_fails_when_a_key_comes_back(memcached_daemon, mc) -> None:
    layer = make_layer(memcached_daemon.url, ["page:{host}{path}"])
    url = f"http://{HOST}/back"
    mc.set(f"page:{HOST}/back", b"old")
    assert run(layer.purge_urls([url]))[url].status == "purged"
    mc.set(f"page:{HOST}/back", b"old again")  # something wrote it back
    verification = run(layer.verify(url, None))
    assert verification.verified is False and f"page:{HOST}/back" in verification.evidence


def test_daemon_down_fails_with_attempts() -> None:
    port = closed_port()
    layer = make_layer(f"memcached://127.0.0.1:{port}", ["page:{host}{path}"], retries=2)
    url = f"http://{HOST}/a"
    outcome = run(layer.purge_urls([url]))[url]
    assert outcome.status == "failed" and outcome.attempts == 3
    assert outcome.detail == f"could not reach memcached at 127.0.0.1:{port}: connection refused after 3 attempts"
    seen = run(layer.observe(url))
    assert not seen.reachable and "connection refused" in seen.error
    assert run(layer.verify(url, None)).verified is None


def test_overlong_key_fails_that_url_only(memcached_daemon, mc) -> None:
    layer = make_layer(memcached_daemon.url, ["page:{host}{path}"])
    long_url = f"http://{HOST}/" + "x" * 300
    short_url = f"http://{HOST}/ok"
    mc.set(f"page:{HOST}/ok", b"v")
    results = run(layer.purge_urls([long_url, short_url]))
    assert results[long_url].status == "failed" and "longer than memcached's 250" in results[long_url].detail
    assert results[short_url].status == "purged"


def config_with(layer: dict) -> dict:
    return {"sites": [{"name": "shop", "hosts": [HOST], "layers": [layer["name"]]}], "layers": [layer]}


def test_config_rejects_patterns_and_bad_endpoints() -> None:
    ok = {"name": "frag", "kind": "memcached", "endpoint": "memcached://127.0.0.1:11211",
          "options": {"key_templates": ["page:{host}{path}"]}}
    assert isinstance(parse_config(config_with(ok)), AppConfig)
    with pytest.raises(ConfigError) as star:
        parse_config(config_with({**ok, "options": {"key_templates": ["frag:{path}:*"]}}))
    assert "layers[0].options.key_templates" in str(star.value) and "cannot list or scan keys" in str(star.value)
    with pytest.raises(ConfigError) as scheme:
        parse_config(config_with({**ok, "endpoint": "redis://127.0.0.1:6379"}))
    assert "layers[0].endpoint: a memcached layer needs a memcached://host:port address" in str(scheme.value)
    with pytest.raises(ValueError, match="unknown placeholder"):
        validate_layer_options(0, LayerConfig(name="m", kind="memcached", endpoint="memcached://h:1",
                                              options={"key_templates": ["{nope}"]}))


def test_keys_come_from_the_normalised_url(memcached_daemon, mc) -> None:
    # before, /café gave a non-ASCII key that could never be purged, and verify then said "keys gone"
    layer = make_layer(memcached_daemon.url, ["page:{host}{path}"])
    mc.set_many({"page:shop.example/caf%C3%A9": b"c", "page:shop.example/keep": b"k"})
    fine, refused = "https://shop.example/x/../caf\u00e9", "https://shop.example/../keep"

    async def scenario():
        return await layer.purge_urls([fine, refused]), await layer.verify(refused, None)

    results, verification = run(scenario())
    assert results[fine].status == "purged" and results[fine].detail == "deleted 1 key"
    assert results[refused].status == "failed" and results[refused].detail.startswith("not sent: ")
    assert verification.verified is None and "climbs above the site's root" in verification.evidence
    assert mc.get("page:shop.example/keep") == b"k"
