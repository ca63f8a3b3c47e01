"""CloudflareLayer against the loopback Cloudflare API fake (tests/fakes/cloudflare.py) and its fake edge."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from agent.config import LayerConfig, validate_layer_options
from agent.layers import build_layer
from agent.layers.base import Capability, Outcome
from agent.layers.cloudflare import CloudflareLayer
from tests.agent.layers.helpers import run
from tests.fakes import FakeCloudflare

T = TypeVar("T")
HOST = "shop.example"


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare()
    try:
        yield fake
    finally:
        fake.close()


def make_layer(cf: FakeCloudflare, token: str | None = None, config: dict[str, Any] | None = None, **options: Any):
    settings: dict[str, Any] = {"retries": 2, **(config or {})}
    return build_layer(LayerConfig(
        name="cdn", kind="cloudflare", endpoint=cf.url,
        credentials={"api_token": token or cf.token},
        options={"zone_id": cf.zone_id, **options}, **settings,
    ))


def urls(n: int, prefix: str = "p") -> list[str]:
    return [f"https://{HOST}/{prefix}{i}" for i in range(n)]


def assert_no_secret(outcomes: dict[str, Outcome] | list[Outcome], *secrets: str) -> None:
    values = outcomes.values() if isinstance(outcomes, dict) else outcomes
    for outcome in values:
        for secret in secrets:
            assert secret not in outcome.detail


def test_registered_with_capabilities(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    assert isinstance(layer, CloudflareLayer)
    assert layer.capabilities == {Capability.PURGE_URL, Capability.PURGE_TAG, Capability.PURGE_PREFIX,
                                  Capability.PURGE_ALL, Capability.VERIFY}
    assert layer.operation_for(["product-1"]) == Capability.PURGE_TAG


def test_150_urls_are_two_requests_by_default(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    targets = urls(150)
    results = run(layer, lambda: layer.purge_urls(targets))
    assert [o.status for o in results.values()] == ["purged"] * 150
    sent = [r.json["files"] for r in cf.requests]
    assert sorted(len(files) for files in sent) == [50, 100]
    assert sorted(url for files in sent for url in files) == sorted(targets)
    assert all(r.headers["authorization"] == f"Bearer {cf.token}" for r in cf.requests)
    assert "queued" in results[targets[0]].detail and "100 URLs in one request" in results[targets[0]].detail


def test_enterprise_limit_of_500_is_one_request(cf: FakeCloudflare) -> None:
    cf.max_items = 500
    layer = make_layer(cf, max_items_per_request=500)
    results = run(layer, lambda: layer.purge_urls(urls(150)))
    assert all(o.status == "purged" for o in results.values())
    assert len(cf.requests) == 1 and len(cf.requests[0].json["files"]) == 150


def test_an_explicit_smaller_max_batch_wins(cf: FakeCloudflare) -> None:
    layer = make_layer(cf, config={"max_batch": 40})
    run(layer, lambda: layer.purge_urls(urls(100)))
    assert sorted(len(r.json["files"]) for r in cf.requests) == [20, 40, 40]


def test_tag_purge(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    results = run(layer, lambda: layer.purge_tags(["product-1", "category-shoes", "product-1"]))
    assert list(results) == ["product-1", "category-shoes"]
    assert all(o.status == "purged" and o.attempts == 1 for o in results.values())
    assert [r.json for r in cf.requests] == [{"tags": ["product-1", "category-shoes"]}]


def test_a_url_purge_never_becomes_a_prefix_purge(cf: FakeCloudflare) -> None:
    # <https://shop.example/*> once purged the prefix shop.example/ as "one URL", without approval
    layer = make_layer(cf)
    wild = [f"https://{HOST}/*", f"https://{HOST}/products/*", f"https://{HOST}/a*b"]
    results = run(layer, lambda: layer.purge_urls([*wild, f"https://{HOST}/ok"]))
    for url in wild:
        assert results[url].status == "failed" and results[url].attempts == 0
        assert results[url].detail.startswith("not sent: a URL with * names everything under a path")
    assert results[f"https://{HOST}/ok"].status == "purged"
    assert [r.json for r in cf.requests] == [{"files": [f"https://{HOST}/ok"]}]  # no "prefixes" request at all


def test_urls_are_sent_normalised_and_unsafe_ones_not_at_all(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    odd, unsafe = f"https://{HOST}/caf\u00e9/./x", f"https://{HOST}/../admin"
    results = run(layer, lambda: layer.purge_urls([odd, unsafe]))
    assert results[odd].status == "purged"
    assert results[unsafe].status == "failed" and "climbs above the site's root" in results[unsafe].detail
    assert [r.json for r in cf.requests] == [{"files": [f"https://{HOST}/caf%C3%A9/x"]}]


def test_purge_all_is_purge_everything_or_hosts(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    outcome = run(layer, lambda: layer.purge_all([HOST, f"www.{HOST}"]))
    assert outcome.status == "purged" and "purge_everything" in outcome.detail
    assert cf.requests[-1].json == {"purge_everything": True}

    by_hosts = make_layer(cf, purge_all_by="hosts")
    outcome = run(by_hosts, lambda: by_hosts.purge_all([HOST, f"www.{HOST}"]))
    assert outcome.status == "purged"
    assert cf.requests[-1].json == {"hosts": [HOST, f"www.{HOST}"]}


def test_auth_failure_says_so_without_the_token(cf: FakeCloudflare) -> None:
    wrong = "wrong-token-SECRET-42"
    layer = make_layer(cf, token=wrong)
    results = run(layer, lambda: layer.purge_urls(urls(3)))
    for outcome in results.values():
        assert outcome.status == "failed"
        assert outcome.detail.startswith("Cloudflare rejected the API token (HTTP 403, 10000: Authentication error)")
        assert outcome.attempts == 1  # not retried
    assert_no_secret(results, wrong, cf.token)
    assert len(cf.requests) == 1


def test_429_waits_for_retry_after(cf: FakeCloudflare) -> None:
    cf.fail_next(429, times=1, retry_after=1)
    layer = make_layer(cf)
    started = time.monotonic()
    results = run(layer, lambda: layer.purge_urls(urls(5)))
    elapsed = time.monotonic() - started
    assert all(o.status == "purged" and o.attempts == 2 for o in results.values())
    assert [r.status for r in cf.requests] == [429, 200]
    assert cf.requests[1].started - cf.requests[0].started >= 1.0
    assert elapsed >= 1.0


def test_5xx_flap_then_success(cf: FakeCloudflare) -> None:
    cf.fail_next(502, times=2)
    layer = make_layer(cf, config={"retries": 3})
    outcome = run(layer, lambda: layer.purge_tags(["t1"]))["t1"]
    assert outcome.status == "purged" and outcome.attempts == 3
    assert [r.status for r in cf.requests] == [502, 502, 200]


def test_5xx_for_longer_than_the_retries_fails(cf: FakeCloudflare) -> None:
    cf.fail_next(503, times=5)
    layer = make_layer(cf, config={"retries": 1})
    outcome = run(layer, lambda: layer.purge_urls(urls(1)))[urls(1)[0]]
    assert outcome.status == "failed" and outcome.attempts == 2
    assert "kept answering HTTP 503 after 2 attempts" in outcome.detail


def test_413_splits_the_batch(cf: FakeCloudflare) -> None:
    cf.max_body_bytes = 1500  # about 40 URLs
    layer = make_layer(cf)
    targets = urls(100, prefix="a-rather-long-path-name-")
    results = run(layer, lambda: layer.purge_urls(targets))
    assert all(o.status == "purged" for o in results.values())
    statuses = [r.status for r in cf.requests]
    assert statuses.count(413) >= 1 and statuses[0] == 413
    accepted = [item for r in cf.requests if r.status == 200 for item in r.json["files"]]
    assert sorted(accepted) == sorted(targets)
    assert results[targets[0]].attempts >= 2  # the rejected big request counts


def test_too_many_items_for_the_plan_is_split(cf: FakeCloudflare) -> None:
    cf.max_items = 30  # a Free/Pro/Business zone
    layer = make_layer(cf)
    results = run(layer, lambda: layer.purge_urls(urls(100)))
    assert all(o.status == "purged" for o in results.values())
    assert max(len(r.json["files"]) for r in cf.requests if r.status == 200) <= 30
    assert any(r.status == 400 for r in cf.requests)


def test_partial_failure_is_reported_per_item(cf: FakeCloudflare) -> None:
    targets = urls(10)
    bad = targets[6]
    cf.fail_items({bad: f"Invalid url: {bad}"})
    layer = make_layer(cf)
    results = run(layer, lambda: layer.purge_urls(targets))
    assert results[bad].status == "failed"
    assert results[bad].detail == f"Cloudflare refused the purge (HTTP 400): 1016: Invalid url: {bad}"
    assert [u for u, o in results.items() if o.status == "purged"] == [u for u in targets if u != bad]
    assert bad not in cf.purged("files")


def test_whole_request_errors_are_not_split(cf: FakeCloudflare) -> None:
    layer = make_layer(cf, zone_id="0000wrongzone")
    results = run(layer, lambda: layer.purge_urls(urls(50)))
    assert all(o.status == "failed" and "7003" in o.detail for o in results.values())
    assert len(cf.requests) == 1


def test_concurrency_cap_is_respected(cf: FakeCloudflare) -> None:
    cf.latency_seconds = 0.15
    layer = make_layer(cf, config={"concurrency": 3})
    results = run(layer, lambda: layer.purge_urls(urls(1000)))
    assert all(o.status == "purged" for o in results.values())
    assert len(cf.requests) == 10
    assert 2 <= cf.max_in_flight <= 3


def test_verify_fresh_after_purge_and_stale_without(cf: FakeCloudflare) -> None:
    edge = cf.edge()
    purged_url, other_url = f"https://{HOST}/pricing", f"https://{HOST}/about"
    for url in (purged_url, other_url):
        edge.set_page(url, "old price $10")
        edge.warm(url)
        edge.edit(url, "new price $12")
    layer = make_layer(cf, verify_endpoint=edge.url)

    async def scenario():
        before = await layer.observe(purged_url)
        purged = await layer.purge_urls([purged_url])
        fresh = await layer.verify(purged_url, edge.origin_observation(purged_url))
        stale = await layer.verify(other_url, edge.origin_observation(other_url))
        return before, purged, fresh, stale

    before, purged, fresh, stale = run(layer, scenario)
    assert before.cache_status == "HIT"
    assert purged[purged_url].status == "purged"
    assert fresh.verified is True and fresh.evidence.startswith("MISS→fresh (ETag")
    assert stale.verified is False and stale.evidence.startswith("still stale: HIT, ETag")
    assert edge.requests[-1].headers["host"] == HOST


def test_verify_tag_purge_through_the_edge(cf: FakeCloudflare) -> None:
    edge = cf.edge()
    url = f"https://{HOST}/products/shoes/red"
    edge.set_page(url, "red shoes $50", tags=["product-red"])
    edge.warm(url)
    edge.edit(url, "red shoes $45")
    layer = make_layer(cf, verify_endpoint=edge.url)

    async def scenario():
        await layer.purge_tags(["product-red"])
        return await layer.verify(url, edge.origin_observation(url))

    assert run(layer, scenario).verified is True


def test_verify_without_verify_endpoint_cannot_tell(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    result = run(layer, lambda: layer.verify(f"https://{HOST}/", None))
    assert result.verified is None
    assert result.evidence == "the Cloudflare API accepted the purge; no verify_endpoint configured to confirm"


def test_secrets_never_in_outcomes(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    outcomes: list[Outcome] = []
    # A server that echoes the token back must not get it into a detail.
    cf.fail_next(400, body={"success": False, "errors": [{"code": 1016, "message": f"bad header Bearer {cf.token}"}],
                            "messages": [], "result": None})
    outcomes += run(layer, lambda: layer.purge_urls(urls(1))).values()
    cf.fail_next(503, times=3, body=f"upstream said {cf.token}")
    outcomes += run(layer, lambda: layer.purge_tags(["x"])).values()
    outcomes.append(run(layer, lambda: layer.purge_all([HOST])))
    assert outcomes[0].status == "failed" and "***" in outcomes[0].detail
    assert_no_secret(outcomes, cf.token)


def test_config_errors_name_the_key(cf: FakeCloudflare) -> None:
    with pytest.raises(ValueError, match=r"layers\[0\]\.options\.zone_id"):
        validate_layer_options(0, LayerConfig(name="cdn", kind="cloudflare", credentials={"api_token": "x"}))
    with pytest.raises(ValueError, match=r"layers\[0\]\.credentials\.api_token"):
        validate_layer_options(0, LayerConfig(name="cdn", kind="cloudflare", options={"zone_id": "abc"}))
    with pytest.raises(ValueError, match=r"layers\[0\]\.options\.verify_endpoint"):
        validate_layer_options(0, LayerConfig(name="cdn", kind="cloudflare", credentials={"api_token": "x"},
                                              options={"zone_id": "abc", "verify_endpoint": "ftp://x"}))
    # no endpoint: the real API
    validate_layer_options(0, LayerConfig(name="cdn", kind="cloudflare", credentials={"api_token": "x"},
                                          options={"zone_id": "abc"}))
    layer = build_layer(LayerConfig(name="cdn", kind="cloudflare", credentials={"api_token": "x"},
                                    options={"zone_id": "abc"}))
    assert layer.purge_endpoint == "https://api.cloudflare.com/client/v4/zones/abc/purge_cache"


def test_prefixes_go_out_as_host_and_path_thirty_to_a_request_and_clear_only_what_is_under_them(
    cf: FakeCloudflare,
) -> None:
    edge = cf.edge()
    under, sibling = f"https://{HOST}/products/shoes/runner", f"https://{HOST}/products-sale"
    for url in (under, sibling):
        edge.set_page(url, "old")
        edge.warm(url)
    layer = make_layer(cf)
    prefixes = [f"https://{HOST}/products/*"] + [f"https://{HOST}/d{i}/*" for i in range(34)]
    results = run(layer, lambda: layer.purge_prefixes(prefixes))
    assert all(o.status == "purged" for o in results.values())
    assert "(queued; 30 prefixes in one request)" in results[prefixes[0]].detail
    sent = [r.json["prefixes"] for r in cf.requests]
    sent.sort(key=len, reverse=True)  # the two requests go out concurrently: their order is not fixed
    assert [len(s) for s in sent] == [30, 5] and sent[0][0] == f"{HOST}/products/"  # no scheme, as Cloudflare takes it
    assert not edge.is_cached(under) and edge.is_cached(sibling)


def test_a_prefix_not_ending_at_a_slash_is_refused_without_a_request(cf: FakeCloudflare) -> None:
    layer = make_layer(cf)
    odd = f"https://{HOST}/products/sho*"
    outcome = run(layer, lambda: layer.purge_prefixes([odd]))[odd]
    assert outcome.status == "failed" and outcome.attempts == 0
    assert outcome.detail == f"Cloudflare purges a prefix only up to a '/': write https://{HOST}/products/*"
    assert cf.requests == []
