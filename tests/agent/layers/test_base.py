"""The shared helpers: retries (with Retry-After), bounded concurrency, batching, URL and header parsing."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.config import ConfigError, LayerConfig, parse_config
from agent.layers.base import (
    LayerUnavailable,
    Observation,
    UnsafePath,
    batches,
    check_request_path,
    host_and_path,
    map_bounded,
    parse_retry_after,
    purge_refusal,
    with_retries,
)
from agent.layers.http import judge, normalise_cache_status, parse_tags
from agent.layers.nginx import NginxLayer
from agent.layers.transport import AiohttpTransport
from agent.layers.varnish import VarnishLayer
from tests.agent.layers.helpers import run
from tests.fakes import FakeRecorder


class FlakyServer(ThreadingHTTPServer):
    """Answers 429 with ``Retry-After: 1`` to the first ``failures`` requests, then 200."""

    daemon_threads = True

    def __init__(self, failures: int = 1, status: int = 429):
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.failures = failures
        self.status = status
        self.seen: list[tuple[str, float]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class FlakyHandler(BaseHTTPRequestHandler):
    server: FlakyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.command, time.monotonic()))
        if len(self.server.seen) <= self.server.failures:
            self.send_response(self.server.status)
            self.send_header("Retry-After", "1")
        else:
            self.send_response(200)
            self.send_header("X-Purged-Count", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PURGE = _answer  # noqa: N815


@pytest.fixture
def flaky():
    server = FlakyServer()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_retries_honours_retry_after(flaky: FlakyServer) -> None:
    async def scenario() -> tuple[httpx.Response, int, float]:
        async with httpx.AsyncClient() as client:
            start = time.monotonic()
            response, attempts = await with_retries(lambda: client.get(flaky.url + "/x"), retries=3, base_delay=0.01)
            return response, attempts, time.monotonic() - start

    response, attempts, elapsed = asyncio.run(scenario())
    assert response.status_code == 200
    assert attempts == 2
    assert elapsed >= 1.0
    assert flaky.seen[1][1] - flaky.seen[0][1] >= 1.0


def test_layer_purge_counts_the_retry_after_attempt(flaky: FlakyServer) -> None:
    layer = VarnishLayer(LayerConfig(name="v", kind="varnish", endpoint=flaky.url, retries=2))

    async def scenario():
        try:
            start = time.monotonic()
            result = await layer.purge_urls(["http://shop.example/a"])
            return result, time.monotonic() - start
        finally:
            await layer.aclose()

    result, elapsed = asyncio.run(scenario())
    outcome = result["http://shop.example/a"]
    assert outcome.status == "purged", outcome
    assert outcome.attempts == 2
    assert elapsed >= 1.0


def test_with_retries_gives_up_on_a_closed_port() -> None:
    port = closed_port()

    async def scenario():
        async with httpx.AsyncClient() as client:
            with pytest.raises(LayerUnavailable) as info:
                await with_retries(lambda: client.get(f"http://127.0.0.1:{port}/"), retries=1, base_delay=0.01)
            return str(info.value)

    message = asyncio.run(scenario())
    assert "after 2 attempts" in message


def test_with_retries_keeps_answering_5xx_then_gives_up() -> None:
    server = FlakyServer(failures=10, status=503)
    try:

        async def scenario():
            async with httpx.AsyncClient() as client:
                with pytest.raises(LayerUnavailable, match="HTTP 503 after 2 attempts"):
                    await with_retries(lambda: client.get(server.url), retries=1, base_delay=0.01)

        asyncio.run(scenario())
        assert len(server.seen) == 2
    finally:
        server.close()


def test_map_bounded_caps_in_flight_and_keeps_order() -> None:
    in_flight = 0
    peak = 0

    async def work(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return n * 2

    results = asyncio.run(map_bounded(list(range(40)), 3, work))
    assert results == [n * 2 for n in range(40)]
    assert peak == 3


def test_batches() -> None:
    assert batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert batches([], 3) == []
    assert batches([1, 2], 0) == [[1], [2]]


def test_host_and_path() -> None:
    assert host_and_path("https://Shop.Example/a?b=1") == ("shop.example", "/a?b=1")
    assert host_and_path("http://shop.example") == ("shop.example", "/")
    assert host_and_path("https://shop.example/x/../caf\u00e9") == ("shop.example", "/caf%C3%A9")
    with pytest.raises(UnsafePath, match="climbs above the site's root"):
        host_and_path("https://shop.example/../about")


# --- nothing leaves a layer's prefix -----------------------------------------------------------------------


@pytest.fixture
def recorder():
    with FakeRecorder() as fake:
        yield fake


@pytest.mark.parametrize(
    "path",
    ["/purge/../admin", "/purge/%2e%2e/admin", "/purge/%2E./admin", "/purge/..%2Fadmin", "/purge/a%5C..%5Cadmin",
     "/purge/a/%2e/b", "/purge/a/.", "/purge/..?x=1"],
)
def test_request_paths_with_a_dot_segment_are_refused_even_encoded(path: str) -> None:
    with pytest.raises(UnsafePath, match="'.' or '..' segment"):
        check_request_path(path, "/purge/")


def test_request_paths_must_start_with_the_prefix() -> None:
    with pytest.raises(UnsafePath, match="is not under '/purge/'"):
        check_request_path("/service/X/purge_all", "/purge/")
    check_request_path("/purge/a..b/.well-known/c.d?next=/../x", "/purge/")  # names with dots; a query is no path


def test_the_transport_never_sends_an_encoded_dot_segment(recorder: FakeRecorder) -> None:
    # httpx drops a literal /../ itself; %2e%2e and ..%2F would reach the server, which resolves them
    async def scenario():
        async with httpx.AsyncClient(transport=AiohttpTransport(connections=1, timeout=5)) as client:
            for path in ("/purge/%2e%2e/admin", "/purge/..%2Fadmin"):
                with pytest.raises(UnsafePath):
                    await client.get(recorder.url + path)
            return (await client.get(recorder.url + "/purge/a..b")).status_code

    assert asyncio.run(scenario()) == 200
    assert [r.path for r in recorder.requests] == ["/purge/a..b"]


REFUSED = {
    "http://shop.example/../about": "climbs above the site's root",
    "http://shop.example/%2e%2e/%2e%2e/about": "climbs above the site's root",
    "http://shop.example/a/..%2F..%2Fabout": "encoded slash",
    "http://shop.example/a\\..\\about": "backslash",
    "http://shop.example/products/*": "a URL with * names everything under a path",
    "http://shop.example/a*b": "a URL with * names everything under a path",
    "/about": "no host",
}


@pytest.mark.parametrize(("kind", "prefix"), [("varnish", ""), ("nginx", "/purge")])
def test_http_caches_send_the_normalised_path_and_nothing_else(recorder: FakeRecorder, kind: str, prefix: str) -> None:
    cls = VarnishLayer if kind == "varnish" else NginxLayer
    layer = cls(LayerConfig(name=kind, kind=kind, endpoint=recorder.url, retries=0))
    sendable = ["http://shop.example/x/../pricing", "http://shop.example/caf\u00e9/./a?b=%7e"]
    results = run(layer, lambda: layer.purge_urls([*sendable, *REFUSED]))

    assert sorted(r.path for r in recorder.requests) == [f"{prefix}/caf%C3%A9/a?b=~", f"{prefix}/pricing"]
    assert all(r.headers["host"] == "shop.example" for r in recorder.requests)
    assert all(results[url].status == "purged" for url in sendable)
    for url, reason in REFUSED.items():
        outcome = results[url]
        assert outcome.status == "failed" and outcome.attempts == 0, url
        assert outcome.detail.startswith("not sent: ") and reason in outcome.detail, outcome.detail


def test_purge_refusal_names_the_reason() -> None:
    assert purge_refusal("https://shop.example/a") is None
    assert "prefix scope" in purge_refusal("https://shop.example/*")
    assert "climbs above" in purge_refusal("https://shop.example/../a")


HTTP_LAYERS = [
    {"kind": "varnish"},
    {"kind": "nginx"},
    {"kind": "webhook", "options": {"url_template": "{endpoint}/purge{path}"}},
    {"kind": "fastly", "credentials": {"api_key": "k"}, "options": {"service_id": "S1"}},
    {"kind": "cloudflare", "credentials": {"api_token": "t"}, "options": {"zone_id": "Z1"}},
]


@pytest.mark.parametrize("layer", HTTP_LAYERS, ids=lambda layer: layer["kind"])
def test_a_password_in_an_http_layers_endpoint_is_a_config_error(layer: dict) -> None:
    # httpx turned user:pw@ into Basic auth, aiohttp then refused the request: every purge failed at run time
    config = {"sites": [{"name": "shop", "hosts": ["shop.example"], "layers": ["l"]}],
              "layers": [{"name": "l", "endpoint": "http://hookuser:s3cret@127.0.0.1:9", **layer}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.endpoint: must not contain a user name or password") as caught:
        parse_config(config)
    assert "s3cret" not in str(caught.value)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("HIT", "HIT"), ("miss", "MISS"), ("TCP_HIT", "HIT"), ("MISS, HIT", "HIT"), ("HIT from edge-1", "HIT"),
     (None, None), ("", None), ("weird", "WEIRD")],
)
def test_normalise_cache_status(raw: str | None, expected: str | None) -> None:
    assert normalise_cache_status(raw) == expected


def test_parse_tags_from_all_three_headers() -> None:
    headers = httpx.Headers([("xkey", "a b"), ("Surrogate-Key", "b c"), ("Cache-Tag", "c,d, e")])
    assert parse_tags(headers) == ("a", "b", "c", "d", "e")


def test_judge() -> None:
    origin = Observation(True, 200, None, '"new"', None, "h-new")
    stale = judge("varnish", Observation(True, 200, "HIT", '"old"', None, "h-old"), origin)
    assert stale.verified is False and stale.evidence == 'still stale: HIT, ETag "old"≠"new"'
    fresh = judge("varnish", Observation(True, 200, "MISS", '"new"', None, "h-new"), origin)
    assert fresh.verified is True and fresh.evidence == 'MISS→fresh (ETag "new" matches origin)'
    assert judge("varnish", Observation(False, error="timed out"), origin).verified is None
    assert judge("varnish", Observation(True, 503, "MISS"), origin).verified is None
    assert judge("varnish", Observation(True, 200, "MISS"), None).verified is True
    assert judge("varnish", Observation(True, 200, "HIT"), None).verified is None


def test_layer_token_bucket_spaces_requests(flaky: FlakyServer) -> None:
    flaky.failures = 0
    config = LayerConfig(name="v", kind="varnish", endpoint=flaky.url, concurrency=10,
                         rate_limit_requests=5, rate_limit_period_seconds=1.0)
    layer = VarnishLayer(config)
    urls = [f"http://shop.example/r{i}" for i in range(12)]

    async def scenario():
        try:
            return await layer.purge_urls(urls)
        finally:
            await layer.aclose()

    outcomes = asyncio.run(scenario())
    assert all(o.status == "purged" for o in outcomes.values())
    times = sorted(t for _, t in flaky.seen)
    # a bucket of 5 refilled at 5/s: 5 at once, then one every 0.2 s, so the 12th waits ~1.4 s
    assert times[11] - times[0] >= 1.1  # unlimited, all 12 land within a few ms
    assert sum(1 for t in times if t - times[0] < 0.1) <= 6  # the burst is the bucket's size, not all 12


def test_a_retry_after_longer_than_the_cap_gives_up_at_once(flaky: FlakyServer) -> None:
    async def scenario():
        async with httpx.AsyncClient() as client:
            start = time.monotonic()
            with pytest.raises(LayerUnavailable, match="asking us to wait 1 s"):
                await with_retries(lambda: client.get(flaky.url + "/x"), retries=3, max_retry_after=0.5)
            return time.monotonic() - start

    assert asyncio.run(scenario()) < 0.5
    assert len(flaky.seen) == 1
