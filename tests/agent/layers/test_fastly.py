"""FastlyLayer against the loopback Fastly API fake (tests/fakes/fastly.py) and its fake edge."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from agent.config import LayerConfig, validate_layer_options
from agent.layers import build_layer
from agent.layers.base import Capability, Outcome
from agent.layers.fastly import FastlyLayer
from tests.agent.layers.helpers import run
from tests.fakes import FakeFastly

T = TypeVar("T")
HOST = "shop.example"


@pytest.fixture
def fastly() -> Iterator[FakeFastly]:
    fake = FakeFastly()
    try:
        yield fake
    finally:
        fake.close()


def make_layer(api: FakeFastly, key: str | None = None, config: dict[str, Any] | None = None, **options: Any):
    settings: dict[str, Any] = {"retries": 2, **(config or {})}
    return build_layer(LayerConfig(
        name="cdn", kind="fastly", endpoint=api.url, credentials={"api_key": key or api.key},
        options={"service_id": api.service_id, **options}, **settings,
    ))


def urls(n: int) -> list[str]:
    return [f"https://{HOST}/p{i}" for i in range(n)]


def test_registered_with_capabilities(fastly: FakeFastly) -> None:
    layer = make_layer(fastly)
    assert isinstance(layer, FastlyLayer)
    assert layer.capabilities == {Capability.PURGE_URL, Capability.PURGE_TAG, Capability.PURGE_ALL, Capability.VERIFY}


def test_url_purge_is_one_post_per_url(fastly: FakeFastly) -> None:
    layer = make_layer(fastly)
    targets = [f"https://{HOST}/a", f"https://{HOST}/b?page=2", f"https://{HOST}/a"]
    results = run(layer, lambda: layer.purge_urls(targets))
    assert list(results) == targets[:2]
    assert all(o.status == "purged" and o.attempts == 1 and "(id " in o.detail for o in results.values())
    assert sorted(r.path for r in fastly.requests) == [f"/purge/{HOST}/a", f"/purge/{HOST}/b?page=2"]
    assert all(r.method == "POST" and r.headers["fastly-key"] == fastly.key for r in fastly.requests)
    assert all("fastly-soft-purge" not in r.headers for r in fastly.requests)


def test_surrogate_keys_in_bulk_of_256(fastly: FakeFastly) -> None:
    layer = make_layer(fastly)
    keys = [f"product-{i}" for i in range(300)]
    results = run(layer, lambda: layer.purge_tags(keys))
    assert all(o.status == "purged" for o in results.values())
    assert sorted(len(r.json["surrogate_keys"]) for r in fastly.requests) == [44, 256]
    assert {r.path for r in fastly.requests} == {f"/service/{fastly.service_id}/purge"}
    assert "256 keys in one request" in results["product-0"].detail


def test_soft_purge_sends_the_header(fastly: FakeFastly) -> None:
    layer = make_layer(fastly, soft_purge=True)
    results = run(layer, lambda: layer.purge_tags(["k1"]))
    urls_results = run(layer, lambda: layer.purge_urls(urls(1)))
    assert results["k1"].detail.startswith("Fastly soft-purged surrogate key")
    assert urls_results[urls(1)[0]].status == "purged"
    assert all(r.headers.get("fastly-soft-purge") == "1" for r in fastly.requests)
    assert [soft for _, _, soft in fastly.purges] == [True, True]


def test_purge_all(fastly: FakeFastly) -> None:
    layer = make_layer(fastly, soft_purge=True)
    outcome = run(layer, lambda: layer.purge_all([HOST]))
    assert outcome.status == "purged" and fastly.purged("all") == ["*"]
    assert fastly.requests[0].path == f"/service/{fastly.service_id}/purge_all"
    assert "fastly-soft-purge" not in fastly.requests[0].headers  # purge_all has no soft form


def test_auth_failure_says_so_without_the_key(fastly: FakeFastly) -> None:
    wrong = "wrong-key-SECRET-77"
    layer = make_layer(fastly, key=wrong)
    results = run(layer, lambda: layer.purge_urls(urls(2)))
    tags = run(layer, lambda: layer.purge_tags(["k"]))
    for outcome in [*results.values(), *tags.values()]:
        assert outcome.status == "failed" and outcome.attempts == 1
        assert outcome.detail.startswith("Fastly rejected the API key (HTTP 401, Provided credentials are missing")
        assert wrong not in outcome.detail and fastly.key not in outcome.detail


def test_429_waits_for_retry_after(fastly: FakeFastly) -> None:
    fastly.fail_next(429, times=1, retry_after=1)
    layer = make_layer(fastly)
    started = time.monotonic()
    outcome = run(layer, lambda: layer.purge_tags(["k"]))["k"]
    assert time.monotonic() - started >= 1.0
    assert outcome.status == "purged" and outcome.attempts == 2
    assert [r.status for r in fastly.requests] == [429, 200]
    assert fastly.requests[1].started - fastly.requests[0].started >= 1.0


def test_5xx_flap_then_success(fastly: FakeFastly) -> None:
    fastly.fail_next(500, times=1)
    fastly.fail_next(503, times=1)
    layer = make_layer(fastly, config={"retries": 3})
    outcome = run(layer, lambda: layer.purge_urls(urls(1)))[urls(1)[0]]
    assert outcome.status == "purged" and outcome.attempts == 3


def test_partial_failure_per_url_and_per_key(fastly: FakeFastly) -> None:
    targets = urls(5)
    fastly.fail_items({targets[2]: 400, "gone-key": 400})
    layer = make_layer(fastly)
    results = run(layer, lambda: layer.purge_urls(targets))
    assert [u for u, o in results.items() if o.status == "failed"] == [targets[2]]
    assert results[targets[2]].detail == f"Fastly refused the purge (HTTP 400): Bad request: cannot purge {HOST}/p2"
    keys = run(layer, lambda: layer.purge_tags(["ok-key", "gone-key"]))
    assert keys["ok-key"].status == "purged"
    assert keys["gone-key"].status == "failed" and "did not acknowledge" in keys["gone-key"].detail


def test_concurrency_cap_is_respected(fastly: FakeFastly) -> None:
    fastly.latency_seconds = 0.1
    layer = make_layer(fastly, config={"concurrency": 4})
    results = run(layer, lambda: layer.purge_urls(urls(20)))
    assert all(o.status == "purged" for o in results.values())
    assert 2 <= fastly.max_in_flight <= 4


def test_verify_fresh_vs_still_hit_with_shielding(fastly: FakeFastly) -> None:
    edge = fastly.edge()
    purged_url, other_url = f"https://{HOST}/pricing", f"https://{HOST}/about"
    for url in (purged_url, other_url):
        edge.set_page(url, "old price $10", tags=[f"page-{url[-5:]}"])
        edge.warm(url)
        edge.edit(url, "new price $12")
    layer = make_layer(fastly, verify_endpoint=edge.url)

    async def scenario():
        await layer.purge_urls([purged_url])
        return (await layer.verify(purged_url, edge.origin_observation(purged_url)),
                await layer.verify(other_url, edge.origin_observation(other_url)))

    fresh, stale = run(layer, scenario)
    assert fresh.verified is True and fresh.evidence.startswith("MISS→fresh")
    assert stale.verified is False and stale.evidence.startswith("still stale: HIT")  # from "HIT, HIT"


def test_after_soft_purge_verify_goes_by_content(fastly: FakeFastly) -> None:
    edge = fastly.edge()
    url = f"https://{HOST}/products/shoes"
    edge.set_page(url, "shoes $50", tags=["cat-shoes"])
    edge.warm(url)
    edge.edit(url, "shoes $45")
    layer = make_layer(fastly, soft_purge=True, verify_endpoint=edge.url)

    async def scenario():
        await layer.purge_tags(["cat-shoes"])
        return await layer.verify(url, edge.origin_observation(url)), await layer.verify(url, None)

    fresh, without_origin = run(layer, scenario)
    # The first look after a soft purge got the stale copy ("HIT"); verify looked again and compared content.
    hits = [r for r in edge.requests if r.path == "/products/shoes"]
    assert len(hits) >= 2
    assert fresh.verified is True and "fresh" in fresh.evidence
    assert without_origin.verified is None and "soft purge" in without_origin.evidence


def test_verify_without_verify_endpoint(fastly: FakeFastly) -> None:
    layer = make_layer(fastly)
    result = run(layer, lambda: layer.verify(f"https://{HOST}/", None))
    assert result.verified is None and "no verify_endpoint" in result.evidence


def test_secrets_never_in_outcomes(fastly: FakeFastly) -> None:
    layer = make_layer(fastly, config={"retries": 0})
    outcomes: list[Outcome] = []
    fastly.fail_next(400, body={"msg": "Bad key", "detail": f"got {fastly.key}"})
    outcomes += run(layer, lambda: layer.purge_urls(urls(1))).values()
    fastly.fail_next(502, body=f"proxy error for {fastly.key}")
    outcomes += run(layer, lambda: layer.purge_tags(["k"])).values()
    fastly.fail_next(403, body={"msg": fastly.key})
    outcomes.append(run(layer, lambda: layer.purge_all([HOST])))
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert all(fastly.key not in o.detail for o in outcomes)
    assert "***" in outcomes[0].detail


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"layers\[2\]\.options\.service_id"):
        validate_layer_options(2, LayerConfig(name="f", kind="fastly", credentials={"api_key": "k"}))
    with pytest.raises(ValueError, match=r"layers\[2\]\.credentials\.api_key"):
        validate_layer_options(2, LayerConfig(name="f", kind="fastly", options={"service_id": "s1"}))
    validate_layer_options(2, LayerConfig(name="f", kind="fastly", credentials={"api_key": "k"},
                                          options={"service_id": "s1", "soft_purge": True}))


def test_a_url_purge_never_leaves_purge_host(fastly: FakeFastly) -> None:
    # https://shop.example/../../service/<id>/purge_all once went out as POST /service/<id>/purge_all: everything
    sid = fastly.service_id
    hostile = [
        f"https://{HOST}/../../service/{sid}/purge_all",
        f"https://{HOST}/x/../../../service/{sid}/purge_all",
        f"https://{HOST}/%2e%2e/%2E%2E/service/{sid}/purge_all",
        f"https://{HOST}/..%2F..%2Fservice%2F{sid}%2Fpurge_all",
        f"https://{HOST}/a\\..\\..\\service/{sid}/purge_all",
        f"https://{HOST}/*",
    ]
    fine = f"https://{HOST}/a/./b/../c"
    layer = make_layer(fastly)
    results = run(layer, lambda: layer.purge_urls([*hostile, fine]))

    assert [r.path for r in fastly.requests] == [f"/purge/{HOST}/a/c"]
    assert fastly.purged("all") == [] and fastly.purged("key") == []
    assert results[fine].status == "purged"
    for url in hostile:
        assert results[url].status == "failed" and results[url].attempts == 0 and results[url].detail.startswith("not sent")
