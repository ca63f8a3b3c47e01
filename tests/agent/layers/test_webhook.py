"""WebhookLayer (a generic in-house invalidation hook) against a loopback hook fake (tests/fakes/webhook.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from agent.config import LayerConfig, validate_layer_options
from agent.layers import build_layer
from agent.layers.base import Capability, Outcome
from agent.layers.webhook import WebhookLayer
from tests.agent.layers.helpers import run
from tests.fakes import FakeWebhook

T = TypeVar("T")
HOST = "shop.example"
HEADERS = {"X-Api-Key": "{credentials.api_key}"}


@pytest.fixture
def hook() -> Iterator[FakeWebhook]:
    fake = FakeWebhook()
    try:
        yield fake
    finally:
        fake.close()


def config(hook: FakeWebhook, secret: str | None = None, settings: dict[str, Any] | None = None, **options: Any):
    options.setdefault("url_template", "{endpoint}/invalidate?url={url}")
    options.setdefault("headers", HEADERS)
    return LayerConfig(name="appcdn", kind="webhook", endpoint=hook.url,
                       credentials={"api_key": secret or hook.token}, options=options,
                       **{"retries": 2, **(settings or {})})


def make_layer(hook: FakeWebhook, secret: str | None = None, settings: dict[str, Any] | None = None, **options: Any):
    cfg = config(hook, secret, settings, **options)
    validate_layer_options(0, cfg)
    return build_layer(cfg)


def urls(n: int) -> list[str]:
    return [f"https://{HOST}/p{i}?q=a&b=c" for i in range(n)]


def test_capabilities_depend_on_verify_endpoint(hook: FakeWebhook) -> None:
    plain = make_layer(hook)
    assert isinstance(plain, WebhookLayer)
    assert plain.capabilities == {Capability.PURGE_URL}
    assert not plain.supports(Capability.VERIFY) and not plain.supports(Capability.PURGE_TAG)
    verifying = make_layer(hook, verify_endpoint="http://127.0.0.1:9")
    assert verifying.capabilities == {Capability.PURGE_URL, Capability.VERIFY}


def test_one_request_per_url_with_encoded_values_and_credential_header(hook: FakeWebhook) -> None:
    layer = make_layer(hook)
    targets = urls(3)
    results = run(layer, lambda: layer.purge_urls(targets))
    assert all(o.status == "purged" and o.detail == "webhook accepted the invalidation (HTTP 202)" for o in results.values())
    assert sorted(hook.invalidated) == sorted(targets)  # the query string survived the round trip (encoded)
    for request in hook.requests:
        assert request.method == "POST" and request.headers["x-api-key"] == hook.token
        assert "%3F" in request.path and "%26" in request.path  # ? and & of the page URL encoded


def test_method_host_path_and_body_template(hook: FakeWebhook) -> None:
    layer = make_layer(
        hook, method="put", url_template="{endpoint}/cache/{host}{path}",
        body_template='{"url": "{url}", "why": "cachebot", "key": "{credentials.api_key}"}',
        headers={"X-Api-Key": "{credentials.api_key}", "X-Host": "{host}"},
    )
    url = f'https://{HOST}/say"hi"?x=1'
    results = run(layer, lambda: layer.purge_urls([url]))
    assert results[url].status == "purged"
    request = hook.requests[0]
    assert request.method == "PUT"
    assert request.path == f"/cache/{HOST}/say%22hi%22%3Fx%3D1"
    assert request.json == {"url": f"https://{HOST}/say%22hi%22?x=1", "why": "cachebot", "key": hook.token}
    assert request.headers["x-host"] == HOST and request.headers["content-type"] == "application/json"


def test_batch_mode_sends_urls_in_one_request(hook: FakeWebhook) -> None:
    layer = make_layer(hook, url_template="{endpoint}/invalidate", batch=True, settings={"max_batch": 100})
    targets = urls(150)
    results = run(layer, lambda: layer.purge_urls(targets))
    assert all(o.status == "purged" for o in results.values())
    assert sorted(len(r.json["urls"]) for r in hook.requests) == [50, 100]
    assert "100 URLs in one request" in results[targets[0]].detail or "50 URLs" in results[targets[0]].detail


def test_expected_status(hook: FakeWebhook) -> None:
    hook.status = 200
    assert run(l := make_layer(hook, expected_status=[204]), lambda: l.purge_urls(urls(1)))[urls(1)[0]].status == "failed"
    outcome = run(l := make_layer(hook, expected_status=[200]), lambda: l.purge_urls(urls(1)))[urls(1)[0]]
    assert outcome.status == "purged"


def test_auth_failure_without_the_secret(hook: FakeWebhook) -> None:
    wrong = "wrong-hook-SECRET-9"
    layer = make_layer(hook, secret=wrong)
    outcome = run(layer, lambda: layer.purge_urls(urls(1)))[urls(1)[0]]
    assert outcome.status == "failed" and outcome.attempts == 1
    assert outcome.detail.startswith("webhook rejected our credentials (HTTP 401)")
    assert wrong not in outcome.detail


def test_429_waits_for_retry_after(hook: FakeWebhook) -> None:
    hook.fail_next(429, retry_after=1)
    layer = make_layer(hook)
    started = time.monotonic()
    outcome = run(layer, lambda: layer.purge_urls(urls(1)))[urls(1)[0]]
    assert time.monotonic() - started >= 1.0
    assert outcome.status == "purged" and outcome.attempts == 2


def test_5xx_flap_then_success_and_persistent_failure(hook: FakeWebhook) -> None:
    hook.fail_next(503, times=2)
    layer = make_layer(hook, settings={"retries": 2})
    assert run(layer, lambda: layer.purge_urls(urls(1)))[urls(1)[0]].attempts == 3
    hook.fail_next(500, times=3)
    outcome = run(layer, lambda: layer.purge_urls(urls(1)))[urls(1)[0]]
    assert outcome.status == "failed" and "kept answering HTTP 500 after 3 attempts" in outcome.detail


def test_partial_failure_is_reported_per_url(hook: FakeWebhook) -> None:
    targets = urls(4)
    hook.fail_items([targets[1]])
    layer = make_layer(hook)
    results = run(layer, lambda: layer.purge_urls(targets))
    assert [o.status for o in results.values()] == ["purged", "failed", "purged", "purged"]
    assert results[targets[1]].detail.startswith("webhook answered HTTP 422")


def test_concurrency_cap_is_respected(hook: FakeWebhook) -> None:
    hook.latency_seconds = 0.1
    layer = make_layer(hook, settings={"concurrency": 3})
    results = run(layer, lambda: layer.purge_urls(urls(12)))
    assert all(o.status == "purged" for o in results.values())
    assert 2 <= hook.max_in_flight <= 3


def test_verify_fresh_vs_still_hit(hook: FakeWebhook) -> None:
    edge = hook.edge()
    purged_url, other_url = f"https://{HOST}/pricing", f"https://{HOST}/about"
    for url in (purged_url, other_url):
        edge.set_page(url, "old")
        edge.warm(url)
        edge.edit(url, "new")
    layer = make_layer(hook, verify_endpoint=edge.url)

    async def scenario():
        await layer.purge_urls([purged_url])
        return (await layer.verify(purged_url, edge.origin_observation(purged_url)),
                await layer.verify(other_url, edge.origin_observation(other_url)))

    fresh, stale = run(layer, scenario)
    assert fresh.verified is True and fresh.evidence.startswith("MISS→fresh")
    assert stale.verified is False and stale.evidence.startswith("still stale: HIT")
    assert all("x-api-key" not in r.headers and "authorization" not in r.headers for r in edge.requests)


def test_verify_without_endpoint(hook: FakeWebhook) -> None:
    layer = make_layer(hook)
    result = run(layer, lambda: layer.verify(f"https://{HOST}/", None))
    assert result.verified is None and "no verify_endpoint" in result.evidence


def test_secrets_never_in_outcomes(hook: FakeWebhook) -> None:
    layer = make_layer(hook, settings={"retries": 0})
    hook.fail_next(400, body=f"bad key {hook.token}")
    outcomes: list[Outcome] = list(run(layer, lambda: layer.purge_urls(urls(1))).values())
    hook.fail_next(502, body=f"{hook.token}")
    outcomes += run(layer, lambda: layer.purge_urls(urls(1))).values()
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all(hook.token not in o.detail for o in outcomes)
    assert "***" in outcomes[0].detail


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url_template": "{endpoint}/x?token={credentials.api_key}&u={url}"}, r"url_template: put credentials"),
        ({"headers": {"X-K": "{credentials.nope}"}}, r"headers\.X-K: \{credentials\.nope\} is not in"),
        ({"url_template": "{endpoint}/invalidate"}, r"url_template: must contain \{url\}"),
        ({"batch": True}, r"url_template: \{url\} names one URL, but batch is true"),
        ({"url_template": "{endpoint}/i", "batch": True, "body_template": '{"u": 1}'}, r"body_template: must contain"),
        ({"body_template": '{"url": {url}}'}, r"body_template: not valid JSON"),
        ({"url_template": "/invalidate?url={url}"}, r"url_template: does not give an http\(s\) URL"),
        ({"method": "GET X"}, r"options\.method"),
        ({"url_template": "{endpoint}/i?u={url}", "retries": 1}, r"options\.retries"),
    ],
)
def test_config_errors_name_the_key(hook: FakeWebhook, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_layer_options(3, config(hook, **options))


# --- paths: a request never leaves the template's prefix -------------------------------------------------------


def test_dot_segments_never_reach_a_path_outside_the_templates_prefix(hook: FakeWebhook) -> None:
    # url_template {endpoint}/api/purge{path} once sent /../../../admin/flush as POST /admin/flush, with the token
    layer = make_layer(hook, url_template="{endpoint}/api/purge{path}", body_template='{"url": "{url}"}')
    hostile = [
        f"https://{HOST}/../../../admin/flush",
        f"https://{HOST}/%2e%2e/%2e%2e/admin/flush",
        f"https://{HOST}/a/..%2F..%2F..%2Fadmin/flush",
        f"https://{HOST}/s?next=/../../../admin/flush",  # the query lands in the path here: refused as well
    ]
    fine = [f"https://{HOST}/x/../pricing", f"https://{HOST}/caf\u00e9"]
    results = run(layer, lambda: layer.purge_urls([*hostile, *fine]))

    assert sorted(r.path for r in hook.requests) == ["/api/purge/caf%C3%A9", "/api/purge/pricing"]
    assert [r.json["url"] for r in sorted(hook.requests, key=lambda r: r.path)] == [
        f"https://{HOST}/caf%C3%A9", f"https://{HOST}/pricing"]
    for url in hostile:
        assert results[url].status == "failed" and results[url].attempts == 0
        assert results[url].detail.startswith("not sent: ")
    assert all(results[url].status == "purged" for url in fine)


def test_url_in_a_header_is_ascii_for_a_non_ascii_path(hook: FakeWebhook) -> None:
    # a {url} header used to fail with UnicodeEncodeError on /café
    layer = make_layer(hook, headers={**HEADERS, "X-Purge-Url": "{url}", "X-Purge-Path": "{path}"})
    url = f"https://{HOST}/caf\u00e9/cr\u00e8me?q=\u00e9t\u00e9"
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "purged"
    sent = hook.requests[0].headers
    assert sent["x-purge-url"] == f"https://{HOST}/caf%C3%A9/cr%C3%A8me?q=%C3%A9t%C3%A9"
    assert sent["x-purge-path"] == "/caf%C3%A9/cr%C3%A8me?q=%C3%A9t%C3%A9"


def test_a_wildcard_url_is_refused_not_sent(hook: FakeWebhook) -> None:
    layer = make_layer(hook)
    url = f"https://{HOST}/products/*"
    outcome = run(layer, lambda: layer.purge_urls([url]))[url]
    assert outcome.status == "failed" and "prefix scope" in outcome.detail
    assert hook.requests == []


def test_a_password_in_the_verify_endpoint_is_a_config_error(hook: FakeWebhook) -> None:
    with pytest.raises(ValueError, match=r"verify_endpoint.*must not contain a user name or password"):
        validate_layer_options(0, config(hook, verify_endpoint="http://u:p@127.0.0.1:9"))
