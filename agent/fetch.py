"""Looking at what a server answers for a page: the origin (to learn tags and the fresh content) or a cache.

We always connect to a *configured* endpoint and send the page's host in the ``Host`` header; the URL's own
host is never resolved or contacted, so a URL can never make cachebot fetch something outside its sites.
"""

from __future__ import annotations

import re

import httpx

from agent.layers.base import Observation, UnsafePath, body_hash, describe_transport_error, host_and_path

# Cache status words we recognise, in the spelling we report (Observation.cache_status).
KNOWN_STATUSES = ("HIT", "MISS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "BYPASS", "PASS", "DYNAMIC")
_STATUS_WORD = re.compile(r"(?<![A-Z])(" + "|".join(KNOWN_STATUSES) + r")(?![A-Z])")
TAG_HEADERS = ("xkey", "Surrogate-Key", "Cache-Tag", "X-Magento-Tags")
_TAG_SPLIT = re.compile(r"[\s,]+")


def normalise_cache_status(value: str | None) -> str | None:
    """``"HIT"``, ``"hit"``, ``"TCP_HIT"``, ``"MISS, HIT"`` (Fastly shielding: the last node is the one that
    answered us) -> one of ``KNOWN_STATUSES``; an unrecognised value is kept upper-cased; absent -> None."""
    if value is None or not value.strip():
        return None
    last = value.split(",")[-1].strip().upper()
    if last in KNOWN_STATUSES:
        return last
    match = _STATUS_WORD.search(last.replace("_", " "))
    return match.group(1) if match else last


def parse_tags(headers: httpx.Headers) -> tuple[str, ...]:
    """Tags from ``xkey`` / ``Surrogate-Key`` (space separated) and ``Cache-Tag`` (comma separated)."""
    seen: dict[str, None] = {}
    for name in TAG_HEADERS:
        for value in headers.get_list(name):
            for tag in _TAG_SPLIT.split(value.strip()):
                if tag:
                    seen.setdefault(tag, None)
    return tuple(seen)




def observation_from_response(response: httpx.Response, cache_status_header: str | None) -> Observation:
    return Observation(
        reachable=True,
        status_code=response.status_code,
        cache_status=normalise_cache_status(response.headers.get(cache_status_header)) if cache_status_header else None,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        body_hash=body_hash(response.content) if response.request.method != "HEAD" else None,
        tags=parse_tags(response.headers),
    )


async def observe_http(
    client: httpx.AsyncClient,
    base_url: str,
    url: str,
    *,
    cache_status_header: str | None = None,
    method: str = "GET",
) -> Observation:
    """``method`` ``url``'s path at ``base_url`` with the page's Host header.

    Never raises: a network error, or a URL that cannot be fetched safely (``host_and_path`` refuses it, or the
    HTTP client finds it invalid — too long, say), is an unreachable Observation saying why."""
    try:
        host, path = host_and_path(url)
    except UnsafePath as exc:
        return Observation(reachable=False, error=f"not fetched: {exc}")
    try:
        response = await client.request(
            method, base_url.rstrip("/") + path, headers={"Host": host, "Accept-Encoding": "identity"}
        )
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        return Observation(reachable=False, error=describe_transport_error(exc))
    except httpx.HTTPError as exc:
        return Observation(reachable=False, error=type(exc).__name__)
    except (httpx.InvalidURL, UnsafePath) as exc:
        return Observation(reachable=False, error=f"not fetched: {exc}")
    return observation_from_response(response, cache_status_header)
