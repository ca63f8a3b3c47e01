"""Retrying a cache's API (agent/layers/retry.py): backoff, Retry-After (and its cap), the layer's token bucket,
against a loopback server that answers 429/503 first."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.config import LayerConfig
from agent.layers.base import LayerUnavailable
from agent.layers.retry import parse_retry_after, with_retries
from agent.layers.varnish import VarnishLayer


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


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


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
