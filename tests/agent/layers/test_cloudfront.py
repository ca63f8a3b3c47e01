"""CloudFrontLayer against moto's server mode (real boto3 over HTTP), with a small loopback proxy in front of it
for what moto cannot do: answer CloudFront's ``TooManyInvalidationsInProgress`` XML error, lose an answer
after the invalidation was made, and report an invalidation still ``InProgress``.

moto does not implement CloudFront's documented ``CallerReference`` rule (the same reference with the same
paths returns the earlier invalidation instead of making a new one), so the proxy applies that rule when asked
(``dedupe=True``); what the tests check is that a retry carries the same reference.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto.server import ThreadedMotoServer

from agent.config import ConfigError, LayerConfig, parse_config
from agent.layers.base import Capability
from agent.layers.cloudfront import CloudFrontLayer, caller_reference

HOST = "shop.example"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}
BUSY_XML = (
    '<?xml version="1.0"?>\n<ErrorResponse xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">'
    "<Error><Type>Sender</Type><Code>TooManyInvalidationsInProgress</Code>"
    "<Message>Your request contains too many invalidations in progress.</Message></Error>"
    "<RequestId>5b1a2c3d-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
).encode()


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def cf(moto_url):
    return boto3.client("cloudfront", region_name="us-east-1", endpoint_url=moto_url, **CREDS)


@pytest.fixture
def distribution(cf) -> str:
    origin_id = "origin-" + uuid.uuid4().hex[:8]
    config = {
        "CallerReference": uuid.uuid4().hex,
        "Comment": "cachebot test",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": origin_id, "DomainName": "origin.shop.example",
                                               "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443,
                                                                      "OriginProtocolPolicy": "http-only"}}]},
        "DefaultCacheBehavior": {"TargetOriginId": origin_id, "ViewerProtocolPolicy": "allow-all",
                                 "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"},
    }
    return cf.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


class Proxy:
    """Forwards to moto; scriptable: ``busy`` (answer TooManyInvalidationsInProgress), ``drop`` (forward, then
    close the connection without an answer), ``in_progress`` (report invalidations InProgress), ``dedupe``."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.busy = 0
        self.drop = 0
        self.in_progress = False
        self.dedupe = False
        self.references: list[str] = []  # CallerReference of every CreateInvalidation that reached us
        self._answers: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.handle(self, body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def forward(self, handler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=10)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(handler.command, handler.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        out = [(k, v) for k, v in response.getheaders() if k.lower() not in ("content-length", "connection",
                                                                                "transfer-encoding", "server", "date")]
        conn.close()
        return response.status, out, data

    @staticmethod
    def reply(handler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler, body: bytes) -> None:
        creating = handler.command == "POST" and handler.path.endswith("/invalidation")
        if creating:
            reference = re.search(rb"<CallerReference>(.*?)</CallerReference>", body).group(1).decode()
            with self._lock:
                self.references.append(reference)
                busy = self.busy > 0
                self.busy -= busy
                remembered = self._answers.get(reference) if self.dedupe else None
            if busy:
                return self.reply(handler, 400, [("Content-Type", "text/xml")], BUSY_XML)
            if remembered is not None:
                return self.reply(handler, *remembered)
        answer = self.forward(handler, body)
        if creating:
            with self._lock:
                self._answers[reference] = answer
                drop = self.drop > 0
                self.drop -= drop
            if drop:  # the invalidation exists, but the client never hears about it
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
        status, headers, data = answer
        if self.in_progress:
            data = re.sub(rb"<Status>[A-Za-z]+</Status>", b"<Status>InProgress</Status>", data)
        self.reply(handler, status, headers, data)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(moto_url):
    p = Proxy(moto_url)
    yield p
    p.close()


def make_layer(endpoint: str, distribution: str, **extra) -> CloudFrontLayer:
    options = {"distribution_id": distribution, **extra.pop("options", {})}
    extra.setdefault("retries", 2)
    return CloudFrontLayer(LayerConfig(name="cdn", kind="cloudfront", endpoint=endpoint, credentials=CREDS,
                                       options=options, **extra))


def run(coro):
    return asyncio.run(coro)


def invalidations(cf, distribution: str) -> list[dict]:
    items = cf.list_invalidations(DistributionId=distribution)["InvalidationList"].get("Items") or []
    return [cf.get_invalidation(DistributionId=distribution, Id=i["Id"])["Invalidation"] for i in items]


def test_urls_are_batched_into_invalidations_and_verified(moto_url, cf, distribution) -> None:
    layer = make_layer(moto_url, distribution, max_batch=3)
    urls = [f"https://{HOST}/p/{i}" for i in range(7)] + [f"https://{HOST}/search?q=caf\u00e9%20b"]

    async def scenario():
        return await layer.purge_urls(urls), [await layer.verify(u, None) for u in urls]

    outcomes, verifications = run(scenario())
    made = invalidations(cf, distribution)
    assert sorted(len(i["InvalidationBatch"]["Paths"]["Items"]) for i in made) == [2, 3, 3]
    sent = sorted(p for i in made for p in i["InvalidationBatch"]["Paths"]["Items"])
    assert sent == sorted([f"/p/{i}" for i in range(7)] + ["/search?q=caf%C3%A9%20b"])  # CloudFront wants it encoded
    by_id = {i["Id"]: i for i in made}
    for url, verification in zip(urls, verifications):
        outcome = outcomes[url]
        inv_id = outcome.detail.split()[1]
        assert outcome.status == "purged" and outcome.attempts == 1 and inv_id in by_id
        assert re.fullmatch(r"invalidation \w+ COMPLETED \([23] paths\)", outcome.detail)
        assert verification.verified is True and verification.evidence == f"invalidation {inv_id} Completed"
    assert layer.capabilities == {Capability.PURGE_URL, Capability.PURGE_PREFIX, Capability.PURGE_ALL, Capability.VERIFY}
    assert layer.verifies_against_origin is False


def test_the_same_batch_again_is_one_invalidation_not_two(moto_url, cf, distribution) -> None:
    layer = make_layer(moto_url, distribution)
    urls = [f"https://{HOST}/a", f"https://{HOST}/b"]
    first = run(layer.purge_urls(urls))
    again = run(layer.purge_urls(list(reversed(urls))))  # same paths, any order: same CallerReference
    [only] = invalidations(cf, distribution)
    assert only["InvalidationBatch"]["CallerReference"] == caller_reference(layer.run_nonce, ["/b", "/a"])
    assert first[urls[0]].detail.split()[1] == again[urls[0]].detail.split()[1] == only["Id"]
    assert again[urls[0]].detail.endswith("already created by this run")
    other_run = make_layer(moto_url, distribution)  # a new run (or a repair pass) is a new invalidation
    run(other_run.purge_urls(urls))
    assert len(invalidations(cf, distribution)) == 2


def test_a_lost_answer_is_retried_with_the_same_caller_reference(proxy, cf, distribution) -> None:
    proxy.drop, proxy.dedupe = 1, True
    layer = make_layer(proxy.url, distribution)
    url = f"https://{HOST}/pricing"
    outcome = run(layer.purge_urls([url]))[url]
    assert outcome.status == "purged" and outcome.attempts == 2
    assert len(proxy.references) == 2 and proxy.references[0] == proxy.references[1]
    [only] = invalidations(cf, distribution)
    assert outcome.detail.split()[1] == only["Id"]


def test_urls_are_sent_as_their_own_paths_even_with_collapse_configured(moto_url, cf, distribution) -> None:
    """Collapsing is decided in the plan (a prefix purge, shown and approved); purge_urls never widens a URL."""
    layer = make_layer(moto_url, distribution, options={"collapse_wildcards_over": 10})
    shoes = [f"https://{HOST}/products/shoes/{i}" for i in range(37)]
    others = [f"https://{HOST}/products/hats/1", f"https://{HOST}/"] + [f"https://{HOST}/p{i}" for i in range(12)]
    collapsed = layer.collapsed_prefixes(shoes + others)
    assert {collapsed[u][0] for u in shoes} == {f"https://{HOST}/products/shoes/*"}
    assert not set(collapsed) & set(others)  # never /*: that is a purge of everything
    run(layer.purge_urls(shoes[:3]))
    [made] = invalidations(cf, distribution)
    assert sorted(made["InvalidationBatch"]["Paths"]["Items"]) == sorted(f"/products/shoes/{i}" for i in range(3))


def test_prefixes_are_wildcard_invalidations_verified_by_their_status(moto_url, cf, distribution) -> None:
    layer = make_layer(moto_url, distribution)
    prefixes = [f"https://{HOST}/products/shoes/*", f"https://www.{HOST}/products/shoes/*", f"https://{HOST}/docs*"]

    async def scenario():
        outcomes = await layer.purge_prefixes(prefixes + [f"https://{HOST}/a*b"])
        return outcomes, await layer.verify_prefix(prefixes[0]), await layer.verify(f"https://{HOST}/docs/x", None)

    outcomes, scope, page = run(scenario())
    [made] = invalidations(cf, distribution)
    assert sorted(made["InvalidationBatch"]["Paths"]["Items"]) == ["/docs*", "/products/shoes/*"]  # paths: no host
    assert all(outcomes[p].status == "purged" for p in prefixes)
    assert outcomes[prefixes[0]].detail == f"invalidation {made['Id']} COMPLETED (2 wildcard paths): /products/shoes/*"
    assert outcomes[f"https://{HOST}/a*b"].status == "failed" and "must end in its only '*'" in \
        outcomes[f"https://{HOST}/a*b"].detail
    assert scope.verified is True and page.verified is True and made["Id"] in scope.evidence


def test_too_many_invalidations_in_progress_is_retried_later(proxy, cf, distribution) -> None:
    proxy.busy = 2
    layer = make_layer(proxy.url, distribution, options={"busy_backoff_seconds": 0.05})
    url = f"https://{HOST}/a"
    outcome = run(layer.purge_urls([url]))[url]
    assert outcome.status == "purged" and outcome.attempts == 3
    assert len(set(proxy.references)) == 1 and len(invalidations(cf, distribution)) == 1


def test_still_busy_after_the_bounded_wait_fails_with_attempts(proxy, cf, distribution) -> None:
    proxy.busy = 10
    layer = make_layer(proxy.url, distribution, options={"busy_backoff_seconds": 0.02, "busy_retries": 2})
    url = f"https://{HOST}/a"
    outcome = run(layer.purge_urls([url]))[url]
    assert outcome.status == "failed" and outcome.attempts == 3
    assert outcome.detail.startswith(f"CloudFront still had too many invalidations in progress on {distribution}")
    assert invalidations(cf, distribution) == []


def test_in_progress_after_the_wait_is_unverified_with_the_id(proxy, distribution) -> None:
    layer = make_layer(proxy.url, distribution, options={"verify_wait_seconds": 0.3})
    url = f"https://{HOST}/slow"
    outcome = run(layer.purge_urls([url]))[url]
    proxy.in_progress = True
    verification = run(layer.verify(url, None))
    inv_id = outcome.detail.split()[1]
    assert verification.verified is None
    assert verification.evidence == f"invalidation {inv_id} still InProgress after 0.3 s"


def test_verify_finds_an_earlier_invalidation_after_a_restart(moto_url, cf, distribution) -> None:
    made = cf.create_invalidation(DistributionId=distribution, InvalidationBatch={
        "Paths": {"Quantity": 1, "Items": ["/docs/*"]}, "CallerReference": uuid.uuid4().hex})["Invalidation"]
    layer = make_layer(moto_url, distribution)  # knows nothing of it
    found = run(layer.verify(f"https://{HOST}/docs/intro", None))
    assert found.verified is True and found.evidence == f"invalidation {made['Id']} Completed"
    missing = run(layer.verify(f"https://{HOST}/elsewhere", None))
    assert missing.verified is None and "no invalidation covering /elsewhere" in missing.evidence


def test_purge_all_sends_a_single_wildcard(moto_url, cf, distribution) -> None:
    layer = make_layer(moto_url, distribution)
    outcome = run(layer.purge_all([HOST]))
    [made] = invalidations(cf, distribution)
    assert made["InvalidationBatch"]["Paths"]["Items"] == ["/*"]
    assert outcome.status == "purged" and "for /* (everything in distribution" in outcome.detail


def test_unknown_distribution_and_unreachable_endpoint_fail(moto_url) -> None:
    url = f"https://{HOST}/a"
    missing = run(make_layer(moto_url, "E0000NOSUCH").purge_urls([url]))[url]
    assert missing.status == "failed" and missing.detail.startswith("CloudFront refused an invalidation on E0000NOSUCH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = run(make_layer(f"http://127.0.0.1:{port}", "E1", retries=1).purge_urls([url]))[url]
    assert down.status == "failed" and down.attempts == 2
    assert down.detail == "could not reach CloudFront for an invalidation on E1: connection failed after 2 attempts"
    assert "testing-secret" not in missing.detail + down.detail


def config_with(layer: dict) -> dict:
    return {"sites": [{"name": "shop", "hosts": [HOST], "layers": [layer["name"]]}], "layers": [layer]}


def test_config_checks() -> None:
    ok = {"name": "cdn", "kind": "cloudfront", "options": {"distribution_id": "E2ABC"}}
    parse_config(config_with(ok))  # no endpoint, no credentials: boto3's default chain
    with pytest.raises(ConfigError, match=r"layers\[0\]\.options\.distribution_id: required key is missing"):
        parse_config(config_with({**ok, "options": {}}))
    with pytest.raises(ConfigError, match=r"layers\[0\]\.credentials\.aws_secret_access_key: required"):
        parse_config(config_with({**ok, "credentials": {"aws_access_key_id": "AKIA"}}))
    with pytest.raises(ConfigError, match=r"layers\[0\]\.options\.collapse_wildcards_over"):
        parse_config(config_with({**ok, "options": {"distribution_id": "E2ABC", "collapse_wildcards_over": 0}}))


def test_a_wildcard_or_unsafe_url_is_never_an_invalidation_path(moto_url, cf, distribution) -> None:
    # <https://shop.example/*> once became an invalidation of /* (the whole distribution) counted as one page
    layer = make_layer(moto_url, distribution)
    refused = [f"https://{HOST}/*", f"https://{HOST}/products/*", f"https://{HOST}/../admin"]
    fine = f"https://{HOST}/x/../caf\u00e9"

    async def scenario():
        return await layer.purge_urls([*refused, fine]), await layer.verify(refused[0], None)

    outcomes, verification = run(scenario())
    made = invalidations(cf, distribution)
    assert [i["InvalidationBatch"]["Paths"]["Items"] for i in made] == [["/caf%C3%A9"]]
    assert outcomes[fine].status == "purged"
    for url in refused:
        assert outcomes[url].status == "failed" and outcomes[url].detail.startswith("not sent: ")
    assert verification.verified is None  # nothing was sent for it, so nothing can be confirmed
