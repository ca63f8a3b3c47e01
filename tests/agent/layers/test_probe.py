"""Probing a page (agent/layers/probe.py): bodies are streamed and capped, every look has one time limit, and a
look that cannot be made is an observation, never an exception. Against a real loopback server that misbehaves,
through both clients cachebot uses (httpx's own pool for the origin, aiohttp's for the layers)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest

from agent.layers.probe import FetchLimits, body_hash, fetch_limits, normalise_cache_status, observe_http, parse_tags
from agent.layers.transport import AiohttpTransport
from tests.fakes.hostile_origin import BIG_BODY_BYTES, HostileOrigin, pattern_bytes

CAP = 64 * 1024


@pytest.fixture
def origin():
    with HostileOrigin(drip_seconds=0.5) as server:
        yield server


def client_for(kind: str) -> httpx.AsyncClient:
    if kind == "aiohttp":  # what HttpCacheLayer uses
        return httpx.AsyncClient(transport=AiohttpTransport(connections=4, timeout=60), timeout=60)
    return httpx.AsyncClient(timeout=60)  # what the verify and check nodes use for the origin


def look(kind: str, base_url: str, url: str, limits: FetchLimits, **options):
    async def main():
        async with client_for(kind) as client:
            with fetch_limits(limits):
                return await observe_http(client, base_url, url, **options)

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_a_body_that_never_ends_is_read_up_to_the_cap_and_said_so(origin, kind):
    # Without the cap this look could only end by timing out (60 s): an answer at all means reading stopped.
    seen = look(kind, origin.url, "https://shop.example/endless", FetchLimits(max_body_bytes=CAP, seconds=60))
    assert seen.reachable and seen.status_code == 200
    assert seen.body_capped and seen.body_bytes == CAP
    assert seen.body_hash == body_hash(pattern_bytes(CAP))  # the hash covers exactly the first CAP bytes


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_a_big_body_over_the_cap_keeps_its_headers_for_comparison(origin, kind):
    seen = look(kind, origin.url, "https://shop.example/big", FetchLimits(max_body_bytes=CAP, seconds=60))
    assert seen.body_capped and seen.body_bytes == CAP
    assert (seen.etag, seen.content_length) == ('"big-v1"', str(BIG_BODY_BYTES))
    assert seen.last_modified == "Wed, 25 Nov 2026 12:00:00 GMT"


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_a_body_within_the_cap_is_hashed_whole(origin, kind):
    seen = look(kind, origin.url, "https://shop.example/big", FetchLimits(max_body_bytes=BIG_BODY_BYTES, seconds=60))
    assert not seen.body_capped and seen.body_bytes == BIG_BODY_BYTES
    assert seen.body_hash == hashlib.sha256(pattern_bytes(BIG_BODY_BYTES)).hexdigest()[:16]


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_a_dripping_answer_ends_when_the_fetch_time_is_up(origin, kind):
    # A byte every 0.5 s keeps every per-read timeout happy; only a limit on the whole fetch ends it.
    seen = look(kind, origin.url, "https://shop.example/drip", FetchLimits(seconds=1.5))
    assert not seen.reachable
    assert seen.error.startswith("timed out: no complete answer within 1.5 s (limits.fetch_timeout_seconds)")


def test_the_requests_deadline_bounds_a_look_more_tightly_than_the_fetch_limit(origin):
    seen = look("httpx", origin.url, "https://shop.example/drip", FetchLimits(seconds=600, deadline=time.time() + 1))
    assert not seen.reachable and seen.error.startswith("timed out")
    assert "the request's deadline (limits.deadline_seconds)" in seen.error


def test_no_look_is_started_after_the_deadline(origin):
    seen = look("httpx", origin.url, "https://shop.example/big", FetchLimits(deadline=time.time() - 1))
    assert seen.error == "timed out: the request's deadline (limits.deadline_seconds) had passed before this look"
    assert origin.requests == []


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_a_url_the_client_cannot_send_is_an_observation_not_a_crash(origin, kind):
    # Issue 9: a 65,536+ character URL raised httpx.InvalidURL("URL too long") out of the verify node.
    seen = look(kind, origin.url, "https://shop.example/" + "a" * 70_000, FetchLimits())
    assert not seen.reachable and seen.error == "could not send the request: URL too long"
    assert origin.requests == []


def test_head_reads_no_body(origin):
    seen = look("httpx", origin.url, "https://shop.example/endless", FetchLimits(max_body_bytes=CAP), method="HEAD")
    assert seen.reachable and seen.body_hash is None and seen.body_bytes is None and not seen.body_capped


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
