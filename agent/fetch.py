"""Looking at what a server answers for a page: the origin (to learn tags and the fresh content) or a cache.

We always connect to a *configured* endpoint and send the page's host in the ``Host`` header; the URL's own
host is never resolved or contacted, so a URL can never make cachebot fetch something outside its sites.
"""

from __future__ import annotations

import re

import httpx

from agent.layers.base import Observation, body_hash, describe_transport_error, host_and_path

TAG_HEADERS = ("xkey", "surrogate-key", "cache-tag", "x-magento-tags")


def tags_from_headers(headers: httpx.Headers) -> tuple[str, ...]:
    """Cache tags a response advertises, first-seen order (the first is the page's own tag by convention)."""
    tags: list[str] = []
    for name in TAG_HEADERS:
        for value in headers.get_list(name):
            tags.extend(t for t in re.split(r"[\s,]+", value) if t)
    return tuple(dict.fromkeys(tags))


def observation_from_response(response: httpx.Response, cache_status_header: str | None) -> Observation:
    cache_status = None
    if cache_status_header and cache_status_header in response.headers:
        # Fastly-style "HIT, MISS" lists one entry per node: the node nearest the client speaks last.
        cache_status = response.headers[cache_status_header].split(",")[-1].strip().upper() or None
    return Observation(
        reachable=True,
        status_code=response.status_code,
        cache_status=cache_status,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        body_hash=body_hash(response.content) if response.request.method != "HEAD" else None,
        tags=tags_from_headers(response.headers),
    )


async def observe_http(
    client: httpx.AsyncClient,
    base_url: str,
    url: str,
    *,
    cache_status_header: str | None = None,
    method: str = "GET",
) -> Observation:
    """``method`` ``url``'s path at ``base_url`` with the page's Host header; never raises for network errors."""
    host, path = host_and_path(url)
    try:
        response = await client.request(
            method, base_url.rstrip("/") + path, headers={"Host": host, "Accept-Encoding": "identity"}
        )
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        return Observation(reachable=False, error=describe_transport_error(exc))
    return observation_from_response(response, cache_status_header)
