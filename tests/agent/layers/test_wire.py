"""What a layer may send for a page (agent/layers/wire.py): the normalised host and path, never a dot segment, a
path outside the layer's prefix, or a ``*`` scope as a URL purge."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agent.config import LayerConfig
from agent.layers.nginx import NginxLayer
from agent.layers.transport import AiohttpTransport
from agent.layers.varnish import VarnishLayer
from agent.layers.wire import check_request_path, host_and_path, purge_refusal
from agent.urls import UnsafePath
from tests.agent.layers.helpers import run
from tests.fakes import FakeRecorder


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
