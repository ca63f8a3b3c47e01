"""httpx on top of aiohttp's connection pool, for the layers that send thousands of purges.

httpx's own async pool (httpcore over anyio) costs 2–4 ms of CPU per request here; aiohttp's costs 0.3 ms
(measured: bench/purge_throughput.py and the numbers in its docstring). With 1,500 purges in a batch that
is the difference between being limited by the CDN's API and being limited by our own CPU. Layers keep
httpx's request/response API; only the wire goes through aiohttp.

Purges themselves take a shorter way still (``exchange``): httpx's client pipeline around each request (URL
parsed twice, headers merged, the cookie jar fed through urllib's compatibility objects, auth and redirect
flows, the body streamed back through httpx) cost 0.6 ms of CPU per purge on top of aiohttp's 0.3 ms
(profiled with cProfile on bench/purge_throughput.py, 500 URLs × 5 layers). ``exchange`` sends the same
headers and answers an ``httpx.Response`` read whole; anything out of the ordinary (a URL that is not plain
ASCII, an auth flow) still goes through the httpx client.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import httpx
from yarl import URL

from agent.layers.wire import check_request_path


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, connections: int, timeout: float):
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, use_dns_cache=True)
            # auto_decompress off and no cookie jar: we compare raw bodies and never carry state between purges
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Defence in depth: httpx has already dropped literal dot segments, and encoded=True below keeps yarl
        # from resolving the rest; a %2e%2e or ..%2F left in the path would be resolved by the server.
        check_request_path(request.url.raw_path.decode("ascii"))
        body = await request.aread()
        # encoded=True: httpx already encoded the URL; re-quoting would turn %3F in a query back into ?
        response = await self._send(request.method, URL(str(request.url), encoded=True),
                                    list(request.headers.multi_items()), body, request)
        return httpx.Response(response.status, headers=_headers(response, keep_encoding=True),
                              stream=_Body(response, request), request=request)

    async def exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> httpx.Response:
        """One request read whole (a purge and its short answer), without httpx's client pipeline. ``url`` must be
        ``plain`` (already encoded: it goes on the wire as it is) and ``headers`` complete (the client's defaults
        included). The same refusals and errors as ``handle_async_request``."""
        target = URL(url, encoded=True)
        check_request_path(target.raw_path_qs)
        response = await self._send(method, target, list(headers.items()), body, None)
        try:
            content = await response.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"timed out: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.release()
        return httpx.Response(response.status, headers=_headers(response), content=content)

    async def _send(self, method: str, url: URL, headers: list[tuple[str, str]], body: bytes | None,
                    request: httpx.Request | None) -> aiohttp.ClientResponse:
        session = self._open()
        try:
            return await session.request(
                method, url, headers=headers, data=body or None, allow_redirects=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except TimeoutError as exc:
            raise httpx.TimeoutException(f"timed out: {exc}", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _headers(response: aiohttp.ClientResponse, *, keep_encoding: bool = False) -> list[tuple[str, str]]:
    """The answer's headers for httpx. aiohttp has undone the chunking but never decodes the body. A streamed
    answer (``keep_encoding``) keeps Content-Encoding, so the body arrives as sent through aiter_raw (verify's
    plain look compares bytes as sent) and inflated through aiter_bytes (a gzip variant is compared by its
    content with the origin's, agent.layers.probe.read_observation); an answer read whole (``exchange``, a purge's
    short answer) is handed over as read."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
    dropped = ("transfer-encoding",) if keep_encoding else ("content-encoding", "transfer-encoding")
    return [(k, v) for k, v in headers if k.lower() not in dropped]


class _Body(httpx.AsyncByteStream):
    """The response body chunk by chunk as it arrives: ``client.request`` still reads it whole (purge answers
    are small), while a caller that streams (agent.layers.probe: verify's byte cap) never holds more than it reads."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request):
        self._response = response
        self._request = request

    async def __aiter__(self):
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"timed out: {exc}", request=self._request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=self._request) from exc

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection goes back to the pool
        else:
            self._response.close()  # stopped early: drop the connection rather than read the rest
