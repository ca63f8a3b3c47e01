"""AkamaiLayer against a loopback Fast Purge v3 API that verifies EdgeGrid signatures (tests/fakes/akamai.py)."""

from __future__ import annotations

import time

import httpx
import pytest
from akamai.edgegrid.edgegrid import EdgeGridAuthHeaders

from agent.config import ConfigError, LayerConfig, parse_config
from agent.layers.akamai import AkamaiLayer, EdgeGridHttpxAuth, encoded_body
from agent.layers.base import Capability
from tests.agent.layers.helpers import run
from tests.fakes.akamai import FakeAkamai, edgegrid_signature
from tests.fakes.base import FakeEdge

HOST = "shop.example"
CREDS = {"client_token": "akab-client-token-123", "client_secret": "SECRET/abc+def=", "access_token": "akab-access-456"}


@pytest.fixture
def edge():
    with FakeEdge(status_header="X-Cache", hit_value="TCP_HIT from a23-1-2-3", miss_value="TCP_MISS from a23-1-2-3") as e:
        yield e


@pytest.fixture
def api(edge):
    with FakeAkamai(**CREDS, edge=edge) as fake:
        yield fake


def make_layer(endpoint: str, creds: dict | None = None, **extra) -> AkamaiLayer:
    options = extra.pop("options", {})
    extra.setdefault("retries", 2)
    return AkamaiLayer(LayerConfig(name="akamai", kind="akamai", endpoint=endpoint, credentials=creds or CREDS,
                                   options=options, **extra))


def test_our_signature_matches_the_reference_library_and_the_fakes_spec() -> None:
    request = httpx.Request("POST", "https://akab-h.luna.akamaiapis.net/ccu/v3/invalidate/url/production",
                            content=b'{"objects":["https://shop.example/a"]}', headers={"Content-Type": "application/json"})
    stamp, nonce = "20260101T12:00:00+0000", "nonce-1"
    ours = EdgeGridHttpxAuth(**CREDS).sign(request, stamp, nonce)

    class Prepared:  # the shape requests gives the library
        method, url, body = "POST", str(request.url), request.content
        headers = {}

    reference = EdgeGridAuthHeaders(CREDS["client_token"], CREDS["client_secret"], CREDS["access_token"])
    assert ours == reference.make_auth_header(Prepared(), stamp, nonce)
    unsigned, signature = ours.split("signature=")
    assert signature == edgegrid_signature(
        client_secret=CREDS["client_secret"], method="POST", scheme="https", host="akab-h.luna.akamaiapis.net",
        path_and_query="/ccu/v3/invalidate/url/production", body=request.content, unsigned_header=unsigned,
        timestamp=stamp)


def test_url_purge_is_signed_accepted_and_reported_unverified_without_verify_endpoint(api) -> None:
    layer = make_layer(api.url)
    urls = [f"https://{HOST}/a", f"https://{HOST}/b?x=1"]

    async def scenario():
        return await layer.purge_urls(urls), await layer.verify(urls[0], None)

    outcomes, verification = run(layer, scenario)
    assert api.auth_failures == []
    [request] = api.requests
    assert request.path == "/ccu/v3/invalidate/url/production" and request.json == {"objects": urls}
    assert request.headers["authorization"].startswith("EG1-HMAC-SHA256 client_token=akab-client-token-123;")
    purge_id = api.requests[0].status and outcomes[urls[0]].detail.split("purgeId ")[1].split(",")[0]
    for url in urls:
        assert outcomes[url].status == "purged" and outcomes[url].attempts == 1
        assert outcomes[url].detail == f"Akamai accepted invalidate of 2 urls on production (purgeId {purge_id}, estimated 5 s)"
    assert verification.verified is None
    assert verification.evidence == f"Akamai accepted purge {purge_id}, estimated 5 s; no verify_endpoint to confirm"
    assert layer.capabilities == {Capability.PURGE_URL, Capability.PURGE_TAG, Capability.VERIFY}


def test_batches_are_split_by_encoded_size(api) -> None:
    layer = make_layer(api.url)
    urls = [f"https://{HOST}/p/{i}-" + "x" * 1900 for i in range(80)]  # ~156 KB of URLs
    outcomes = run(layer, lambda: layer.purge_urls(urls))
    assert {o.status for o in outcomes.values()} == {"purged"}
    sizes = [len(r.body) for r in api.requests]
    assert len(sizes) >= 4 and max(sizes) < 50_000 and all(r.status == 201 for r in api.requests)
    assert sorted(o for _, _, _, objects in api.purges for o in objects) == sorted(urls)  # each exactly once
    assert api.auth_failures == []


def test_object_too_long_for_any_request_fails_alone(api) -> None:
    layer = make_layer(api.url)
    huge, small = f"https://{HOST}/" + "y" * 50_000, f"https://{HOST}/ok"
    outcomes = run(layer, lambda: layer.purge_urls([huge, small]))
    assert outcomes[huge].status == "failed" and "under 50,000 bytes" in outcomes[huge].detail
    assert outcomes[small].status == "purged" and [p[3] for p in api.purges] == [[small]]


def test_tag_purge_with_delete_on_staging(api) -> None:
    layer = make_layer(api.url, options={"action": "delete", "network": "staging"})
    outcomes = run(layer, lambda: layer.purge_tags(["product-42", "category-shoes"]))
    assert api.purges == [("delete", "tag", "staging", ["product-42", "category-shoes"])]
    assert outcomes["product-42"].status == "purged"
    assert "Akamai accepted delete of 2 tags on staging" in outcomes["category-shoes"].detail


def test_wrong_secret_fails_without_leaking_credentials(api) -> None:
    bad = {**CREDS, "client_secret": "WRONG-secret-value"}
    layer = make_layer(api.url, creds=bad)
    outcome = run(layer, lambda: layer.purge_urls([f"https://{HOST}/a"]))[f"https://{HOST}/a"]
    assert outcome.status == "failed" and outcome.attempts == 1  # a refusal is not retried
    assert outcome.detail.startswith("Akamai refused our credentials (HTTP 401: Not authorized: The signature does not match)")
    for secret in (*bad.values(), CREDS["client_secret"]):
        assert secret not in outcome.detail
    assert api.purges == []


def test_429_with_rate_limit_headers_and_5xx_are_retried_with_fresh_signatures(api) -> None:
    layer = make_layer(api.url, retries=3)
    api.rate_limit_next(times=1, reset_in=0.4)
    api.fail_next(503, times=1)
    url = f"https://{HOST}/a"
    started = time.monotonic()
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "purged" and outcome.attempts == 3
    assert time.monotonic() - started >= 0.3  # waited for X-RateLimit-Reset
    assert [r.status for r in api.requests] == [429, 503, 201]
    nonces = {r.headers["authorization"].split("nonce=")[1].split(";")[0] for r in api.requests}
    assert len(nonces) == 3 and api.auth_failures == []


def test_rate_limited_throughout_fails_with_attempts(api) -> None:
    layer = make_layer(api.url, retries=1)
    api.rate_limit_next(times=5, reset_in=0.05)
    outcome = run(layer, lambda: layer.purge_urls([f"https://{HOST}/a"]))[f"https://{HOST}/a"]
    assert outcome.status == "failed" and outcome.attempts == 2 and "429" in outcome.detail


def test_verify_through_the_edge_compares_with_origin(api, edge) -> None:
    fresh_url, other_url = f"http://{HOST}/pricing", f"http://{HOST}/about"
    for url in (fresh_url, other_url):
        edge.set_page(url, "old price")
        edge.warm(url)
        edge.edit(url, "new price")
    layer = make_layer(api.url, options={"verify_endpoint": edge.url, "verify_wait_seconds": 0.6})
    assert layer.verifies_against_origin is True

    async def scenario():
        before = await layer.observe(fresh_url)
        await layer.purge_urls([fresh_url])
        good = await layer.verify(fresh_url, edge.origin_observation(fresh_url))
        bad = await layer.verify(other_url, edge.origin_observation(other_url))  # never purged
        return before, good, bad

    before, good, bad = run(layer, scenario)
    assert before.cache_status == "HIT"
    assert good.verified is True and good.evidence.startswith("MISS→fresh")
    assert bad.verified is False and "still stale: HIT" in bad.evidence
    assert all(r.headers.get("pragma", "").startswith("akamai-x-cache-on") for r in edge.requests)


def config_with(layer: dict) -> dict:
    return {"sites": [{"name": "shop", "hosts": [HOST], "layers": [layer["name"]]}], "layers": [layer]}


def test_config_needs_https_and_all_three_credentials() -> None:
    ok = {"name": "akamai", "kind": "akamai", "endpoint": "https://akab-x.luna.akamaiapis.net", "credentials": CREDS}
    parse_config(config_with(ok))
    missing = {k: v for k, v in CREDS.items() if k != "client_secret"}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.credentials\.client_secret: required"):
        parse_config(config_with({**ok, "credentials": missing}))
    with pytest.raises(ConfigError, match=r"layers\[0\]\.endpoint: the Fast Purge API is https://"):
        parse_config(config_with({**ok, "endpoint": "http://akab-x.luna.akamaiapis.net"}))
    with pytest.raises(ConfigError, match=r"layers\[0\]\.options\.action"):
        parse_config(config_with({**ok, "options": {"action": "ban"}}))
    assert len(encoded_body(["a"])) == len('{"objects":["a"]}')


def test_purge_everything_goes_by_cp_code_as_numbers(api) -> None:
    layer = make_layer(api.url, options={"cp_codes": [12345, 67890]})
    assert layer.supports(Capability.PURGE_ALL)
    outcome = run(layer, lambda: layer.purge_all([HOST]))
    assert outcome.status == "purged" and "2 cpcodes" in outcome.detail
    assert api.purges == [("invalidate", "cpcode", "production", [12345, 67890])]
    assert not make_layer(api.url).supports(Capability.PURGE_ALL)  # without CP codes there is no way to


def test_urls_go_out_normalised_and_wildcards_or_unsafe_paths_not_at_all(api) -> None:
    layer = make_layer(api.url)
    refused = [f"https://{HOST}/products/*", f"https://{HOST}/../admin", f"https://{HOST}/a%2F..%2F..%2Fb"]
    fine = [f"https://{HOST}/x/./../caf\u00e9", f"https://{HOST}/b?q=%7e"]
    results = run(layer, lambda: layer.purge_urls([*refused, *fine]))
    assert api.purges == [("invalidate", "url", "production", [f"https://{HOST}/caf%C3%A9", f"https://{HOST}/b?q=~"])]
    assert all(results[url].status == "purged" for url in fine)
    for url in refused:
        assert results[url].status == "failed" and results[url].detail.startswith("not sent: ")
