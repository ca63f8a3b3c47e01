"""RedisLayer against a real redis-server: exact keys, SCAN patterns, tag sets, and the demo origin's app cache."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from agent.config import LayerConfig, validate_layer_options
from agent.layers.base import Capability
from agent.layers.redis import RedisLayer, redact
from tests.agent.layers.helpers import run
from tests.agent.layers.test_varnish import HOST, closed_port, new_page, origin_observation


def make_layer(endpoint: str, templates: list[str], **extra) -> RedisLayer:
    options = {"key_templates": templates, **extra.pop("options", {})}
    return RedisLayer(LayerConfig(name="appcache", kind="redis", endpoint=endpoint, retries=1, options=options, **extra))


@pytest.fixture
def client(fresh_redis):
    c = redis.Redis.from_url(fresh_redis.url)
    yield c
    c.close()


def test_exact_keys_purged_then_not_cached(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["page:{host}{path}", "meta:{url}"])
    url = "https://Shop.Example/a?x=1"
    client.set("page:shop.example/a?x=1", "old")
    client.set("meta:https://shop.example/a?x=1", "{}")
    client.set("page:shop.example/b", "other")

    async def scenario():
        before = await layer.observe(url)
        first = await layer.purge_urls([url])
        after = await layer.observe(url)
        second = await layer.purge_urls([url])
        return before, first[url], after, second[url]

    before, first, after, second = run(layer, scenario)
    assert before.reachable and before.cache_status == "HIT"
    assert first.status == "purged" and first.detail == "deleted 2 keys" and first.attempts == 1
    assert after.cache_status == "MISS"
    assert second.status == "not_cached"
    assert client.get("page:shop.example/b") == b"other"


def test_many_urls_in_small_pipelines(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["p:{host}{path_only}"], max_batch=3, concurrency=2)
    urls = [f"http://{HOST}/item-{i}" for i in range(20)]
    client.mset({f"p:{HOST}/item-{i}": "x" for i in range(0, 20, 2)})
    results = run(layer, lambda: layer.purge_urls(urls))
    assert [results[u].status for u in urls] == ["purged", "not_cached"] * 10
    assert client.dbsize() == 0


def test_pattern_delete_uses_scan_not_keys(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["frag:{host}{path}:*"], max_batch=100)
    url = f"http://{HOST}/list?page=2"
    client.mset({f"frag:{HOST}/list?page=2:{i}": "x" for i in range(1200)})
    client.mset({f"frag:{HOST}/list?page=3:{i}": "y" for i in range(10)})  # '?' must not act as a wildcard
    client.mset({f"frag:{HOST}/list?page=22:{i}": "z" for i in range(5)})
    client.config_resetstat()

    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    stats = client.info("commandstats")
    assert outcome.status == "purged" and outcome.detail == "deleted 1200 keys"
    assert client.dbsize() == 15
    assert stats["cmdstat_scan"]["calls"] >= 2
    assert "cmdstat_keys" not in stats


def test_verify(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["p:{host}{path_only}"])
    url = f"http://{HOST}/v"
    client.set(f"p:{HOST}/v", "old")

    async def scenario():
        stale = await layer.verify(url, None)
        await layer.purge_urls([url])
        return stale, await layer.verify(url, None)

    stale, fresh = run(layer, scenario)
    assert stale.verified is False and stale.evidence == f"still there: p:{HOST}/v"
    assert fresh.verified is True and fresh.evidence == "keys gone"


def test_tag_sets(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["p:{host}{path_only}"], options={"tag_set_template": "tagset:{tag}"})
    assert layer.supports(Capability.PURGE_TAG) and not RedisLayer.capabilities & {Capability.PURGE_TAG}
    client.mset({"p:a": "1", "p:b": "2", "p:c": "3"})
    client.sadd("tagset:shoes", "p:a", "p:b")

    results = run(layer, lambda: layer.purge_tags(["shoes", "hats"]))
    assert results["shoes"].status == "purged" and results["shoes"].detail == "deleted 2 keys"
    assert results["hats"].status == "not_cached"
    assert client.exists("p:a", "p:b", "tagset:shoes") == 0 and client.get("p:c") == b"3"


def test_with_the_demo_origin_app_cache(stack) -> None:
    """The origin serves its Redis copy until the key goes: stale before the purge, fresh after."""
    layer = make_layer(stack.redis_url, ["demo:page:{host}{path_only}", "demo:meta:{host}{path_only}"])
    path, url = new_page(stack, "app v1")
    httpx.get(stack.origin_url + path, headers={"Host": HOST}).raise_for_status()  # fills the app cache
    stack.content.edit(path, "app v2")

    async def scenario():
        origin_before = await origin_observation(stack, path)
        stale = await layer.verify(url, origin_before)
        purged = (await layer.purge_urls([url]))[url]
        gone = await layer.verify(url, None)
        origin_after = await origin_observation(stack, path)  # re-renders and re-fills the key
        refilled = await layer.verify(url, origin_after)
        return stale, purged, gone, refilled

    stale, purged, gone, refilled = run(layer, scenario)
    assert stale.verified is False
    assert purged.status == "purged" and purged.detail == "deleted 2 keys"
    assert gone.verified is True and gone.evidence == "keys gone"
    assert refilled.verified is True and "matches origin" in refilled.evidence
    assert "app v2" in httpx.get(stack.origin_url + path, headers={"Host": HOST}).text


def test_unreachable_redis_fails_quickly_and_hides_the_password() -> None:
    port = closed_port()
    layer = make_layer(f"redis://:hunter2@127.0.0.1:{port}/0", ["p:{host}{path}", "q:{host}*"])
    url = f"http://{HOST}/x"

    async def scenario():
        start = time.monotonic()
        outcome = (await layer.purge_urls([url]))[url]
        return outcome, await layer.observe(url), await layer.verify(url, None), time.monotonic() - start

    outcome, observation, verification, elapsed = run(layer, scenario)
    assert outcome.status == "failed" and outcome.attempts == 2
    assert outcome.detail == f"could not reach redis at 127.0.0.1:{port}: connection refused after 2 attempts"
    assert observation.reachable is False and verification.verified is None
    for text in (outcome.detail, observation.error or "", verification.evidence):
        assert "hunter2" not in text
    assert elapsed < 3
    assert layer.redacted_endpoint == f"redis://:***@127.0.0.1:{port}/0"


def test_stopped_redis_then_back(tmp_path) -> None:
    from agent.demo.procs import start_redis

    daemon = start_redis(tmp_path)
    try:
        layer = make_layer(daemon.url, ["p:{host}{path}"])
        url = f"http://{HOST}/y"
        daemon.stop()
        down = run(layer, lambda: layer.purge_urls([url]))[url]
        daemon.start()
        up = run(layer, lambda: layer.purge_urls([url]))[url]
    finally:
        daemon.stop()
    assert down.status == "failed" and down.attempts == 2 and "could not reach redis" in down.detail
    assert up.status == "not_cached"


def test_config_checks() -> None:
    def check(endpoint: str, options: dict) -> None:
        validate_layer_options(3, LayerConfig(name="r", kind="redis", endpoint=endpoint, options=options))

    check("redis://127.0.0.1:6379/0", {"key_templates": ["{host}{path}", "x:{url}", "{path_only}*"]})
    check("unix:///run/redis.sock", {"key_templates": ["k:{url}"]})
    with pytest.raises(ValueError, match=r"layers\[3\]\.options\.key_templates: .*unknown placeholder \{hots\}"):
        check("redis://h", {"key_templates": ["p:{hots}{path}"]})
    with pytest.raises(ValueError, match=r"layers\[3\]\.options\.key_templates"):
        check("redis://h", {"key_templates": []})
    with pytest.raises(ValueError, match=r"unknown placeholder \{\}"):
        check("redis://h", {"key_templates": ["p:{}"]})
    with pytest.raises(ValueError, match=r"layers\[3\]\.endpoint: a redis layer needs a redis://") as info:
        check("http://user:s3cret@h:6379", {"key_templates": ["k"]})
    assert "s3cret" not in str(info.value)
    assert redact("rediss://bob:pw@cache:6380/1") == "rediss://bob:***@cache:6380/1"
    assert redact("redis://cache:6379") == "redis://cache:6379"
    assert RedisLayer.capabilities == {Capability.PURGE_URL, Capability.PURGE_PREFIX, Capability.PURGE_ALL,
                                       Capability.VERIFY}


def test_keys_come_from_the_normalised_url(fresh_redis, client) -> None:
    # the app keys a page on the path the browser asked for: /x/../about is /about, /café is /caf%C3%A9
    layer = make_layer(fresh_redis.url, ["page:{host}{path}"])
    client.mset({"page:shop.example/about": "a", "page:shop.example/caf%C3%A9": "c",
                 "page:shop.example/keep": "k", "page:shop.example/products/shoe": "s"})
    fine = ["https://shop.example/x/../about", "https://shop.example/caf\u00e9"]
    refused = ["https://shop.example/../keep", "https://shop.example/products/*"]

    async def scenario():
        return await layer.purge_urls([*fine, *refused]), await layer.observe(refused[0])

    results, seen = run(layer, scenario)
    assert [results[url].detail for url in fine] == ["deleted 1 key", "deleted 1 key"]
    for url in refused:
        assert results[url].status == "failed" and results[url].detail.startswith("not sent: ")
    assert sorted(client.keys("page:*")) == [b"page:shop.example/keep", b"page:shop.example/products/shoe"]
    assert seen.reachable is False and "climbs above the site's root" in seen.error


def test_prefix_purge_deletes_every_key_under_it_and_nothing_beside(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["page:{host}{path}", "frag:{path_only}:*"])
    client.mset({
        f"page:{HOST}/docs/a": "x", f"page:{HOST}/docs/b/c?v=1": "x", "frag:/docs/a:header": "x",
        f"page:{HOST}/docsx/a": "keep",  # a sibling, not under /docs/
        f"page:{HOST}/do[cs]/a": "keep", f"page:{HOST}/d?cs/a": "keep",  # glob syntax in keys is not a wildcard
        f"page:www.{HOST}/docs/a": "keep",  # the same path on another host
    })
    prefix = f"https://{HOST}/docs/*"

    async def scenario():
        purged = await layer.purge_prefixes([prefix])
        return purged[prefix], await layer.verify_prefix(prefix)

    outcome, verification = run(layer, scenario)
    assert outcome.status == "purged" and outcome.detail == f"deleted 3 keys under https://{HOST}/docs/"
    assert sorted(k.decode() for k in client.keys("*")) == sorted([
        f"page:{HOST}/docsx/a", f"page:{HOST}/do[cs]/a", f"page:{HOST}/d?cs/a", f"page:www.{HOST}/docs/a"])
    assert verification.verified is True and verification.evidence == f"no key under https://{HOST}/docs/ left"


def test_prefix_keys_written_again_after_the_purge_are_not_called_fresh(fresh_redis, client) -> None:
    layer = make_layer(fresh_redis.url, ["page:{host}{path}"])
    prefix = f"https://{HOST}/do[cs]/*"  # read as /do%5Bcs%5D/ (normalised), its own % and glob kept literal
    client.set(f"page:{HOST}/do%5Bcs%5D/a", "old")
    client.set(f"page:{HOST}/doc/a", "keep")  # what the unescaped glob /do[cs]/ would match
    client.set(f"page:{HOST}/dc/a", "keep")

    async def scenario():
        purged = await layer.purge_prefixes([prefix])
        client.set(f"page:{HOST}/do%5Bcs%5D/b", "written since")
        return purged[prefix], await layer.verify_prefix(prefix)

    outcome, verification = run(layer, scenario)
    assert outcome.status == "purged" and client.get(f"page:{HOST}/dc/a") == b"keep"
    assert client.get(f"page:{HOST}/doc/a") == b"keep"
    assert verification.verified is None
    assert verification.evidence.startswith(f"keys under https://{HOST}/do[cs]/ were written again since the purge "
                                            f"(page:{HOST}/do%5Bcs%5D/b)")
