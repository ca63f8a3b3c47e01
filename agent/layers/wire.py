"""What a layer may put on the wire for a page: its normalised host and path (``agent.urls``), and nothing that could
purge another page — a ``*`` scope sent as a URL, a dot segment, a path outside the layer's prefix."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from agent.urls import UnsafePath, normalise, wire_path


def host_and_path(url: str) -> tuple[str, str]:
    """``https://Shop.example/a/../b?c=1`` -> (``shop.example``, ``/b?c=1``): what a cache keys a page on, as it
    goes on the wire — normalised once by ``agent.urls`` (no dot segments, percent-encoded ASCII), so neither
    the HTTP client nor the server can resolve it to another page. Raises ``UnsafePath`` saying why not."""
    return wire_path(url)


def wire_url(url: str) -> str:
    """The absolute URL a purge API is given for ``url`` (normalised, ASCII). Raises ``UnsafePath``."""
    wire_path(url)  # the same refusals as every other layer
    return normalise(url).removesuffix("?")


WILDCARD_REFUSAL = (
    "a URL with * names everything under a path (a prefix scope), not one page: it is never sent as a URL purge, "
    "where a cache could read it as a wildcard"
)


def purge_refusal(url: str) -> str | None:
    """Why a layer must not send a URL purge for ``url`` (a ``*`` scope, or a path that is not safe), or None.

    Screening already refuses these; layers check again so that nothing built later (a dependent page, a
    retry, a caller outside the graph) can purge more than one page through ``purge_urls``.
    """
    if "*" in url:
        return WILDCARD_REFUSAL
    try:
        wire_path(url)
    except UnsafePath as exc:
        return str(exc)
    return None


def check_request_path(path: str, prefix: str = "/") -> None:
    """The last look before a request goes out: ``path`` (with any query) must start with ``prefix`` and hold no
    ``.``/``..`` segment, even once percent-decoded (``%2e%2e``, ``..%2F``), that a client or server could
    resolve out of the prefix. Raises ``UnsafePath``; never fires for a URL that passed screening."""
    only_path = path.split("?", 1)[0]
    if not only_path.startswith(prefix):
        raise UnsafePath(f"the request path {only_path[:80]!r} is not under {prefix!r}")
    decoded = unquote(only_path).replace("\\", "/")
    if any(segment in (".", "..") for segment in decoded.split("/")):
        raise UnsafePath(
            f"the request path {only_path[:80]!r} has a '.' or '..' segment that would resolve outside {prefix!r}"
        )


def prefix_parts(prefix: str) -> tuple[str, str]:
    """``https://Shop.example/products/*`` -> (``shop.example``, ``/products/``): the host and the path prefix.

    Raises ``ValueError`` (a message safe to show) unless the prefix is an absolute http(s) URL whose path ends
    in its only ``*``, with no query or fragment: nothing else says unambiguously what it covers. The path is the
    normalised one (``agent.urls.normalise``), so a prefix matches the keys the caches hold for the pages under it."""
    parts = urlsplit(prefix)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{prefix!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment or "?" in prefix or "#" in prefix:
        raise ValueError(f"{prefix!r}: a prefix purge takes no query string or fragment")
    if not parts.path.endswith("*") or prefix.count("*") != 1:
        raise ValueError(f"{prefix!r}: a prefix must end in its only '*' (like https://{parts.hostname}/products/*)")
    try:
        parts = urlsplit(normalise(prefix))
    except ValueError as exc:
        raise ValueError(f"{prefix!r}: {exc}") from None
    return parts.hostname.lower(), parts.path[:-1] or "/"


def plain(url: str) -> bool:
    """A URL ``exchange`` may send as it is: printable ASCII without spaces, and not longer than httpx accepts
    (agent.urls gives layers such paths; anything else is left to httpx, which encodes or refuses it)."""
    return len(url) <= 65_536 and url.isascii() and url.isprintable() and " " not in url
