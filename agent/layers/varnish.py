"""Varnish: PURGE one URL, PURGEKEYS (vmod_xkey) by tag, BAN by regex; hit/miss from ``X-Cache``.

The VCL conventions are FOSHttpCache's (see ``agent/demo/varnish.vcl.tmpl``): ``PURGE <path>`` with the
page's Host, ``PURGEKEYS`` with ``xkey-purge: t1 t2`` (or ``xkey-softpurge``) answering ``X-Purged-Count``,
``BAN`` with ``X-Ban-Url`` / ``X-Ban-Host`` answering 400 (``X-Ban-Error``) for a bad expression.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from agent.config import LayerConfig
from agent.layers.base import Capability, Outcome, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.http import HttpCacheLayer
from agent.layers.probe import normalise_cache_status
from agent.layers.wire import host_and_path, prefix_parts, purge_refusal

if TYPE_CHECKING:  # annotations only: httpx loads when a layer first sends (issue #13: start-up)
    import httpx

_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_NOT_CACHED_REASON = re.compile(r"not (in )?cache|not cached|not found in cache", re.IGNORECASE)


def _count(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["X-Purged-Count"])
    except (KeyError, ValueError):
        return None


# Printable ASCII a browser leaves as it is in a path (WHATWG's path percent-encode set is the rest).
_PATH_AS_SENT = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"#<>?`{}')


def literal_regex(text: str) -> str:
    """``text`` as a PCRE matching it literally: one word (``std.ban`` splits on spaces), ASCII only.

    Characters a browser percent-encodes in a path (space, quotes, non-ASCII, ...) are percent-encoded first,
    because that is how Varnish stored the object's URL; every other character that is not a letter, digit, ``/``,
    ``-`` or ``_`` is escaped with a backslash, which PCRE reads as that character itself."""
    encoded = quote(text, safe=_PATH_AS_SENT)
    return "".join(c if c.isalnum() or c in "/-_" else "\\" + c for c in encoded)


def _objects(n: int) -> str:
    return f"{n} object" + ("" if n == 1 else "s")


class VarnishLayer(HttpCacheLayer):
    kind = "varnish"
    capabilities = frozenset(
        {Capability.PURGE_URL, Capability.PURGE_TAG, Capability.PURGE_PREFIX, Capability.BAN, Capability.PURGE_ALL,
         Capability.VERIFY}
    )

    class Options(HttpCacheLayer.Options):
        cache_status_header: str = "X-Cache"
        soft_purge: bool = False
        purge_method: str = "PURGE"
        tag_purge_method: str = "PURGEKEYS"
        ban_method: str = "BAN"

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        for field in ("purge_method", "tag_purge_method", "ban_method"):
            if not _TOKEN.match(getattr(self.options, field)):
                raise ValueError(f"{field} {getattr(self.options, field)!r} is not an HTTP method name")
        # A soft purge serves the old object once more (grace): give verify a moment before calling it stale.
        self.verify_settle_seconds = 2.0 if self.options.soft_purge else 0.0

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        super().check_config(index, config)
        options = cls.Options.model_validate(config.options)
        for field in ("purge_method", "tag_purge_method", "ban_method"):
            if not _TOKEN.match(getattr(options, field)):
                raise ValueError(f"layers[{index}].options.{field}: {getattr(options, field)!r} is not an HTTP method")

    def cache_status_of(self, response: httpx.Response) -> str | None:
        status = normalise_cache_status(response.headers.get(self.options.cache_status_header))
        if status is None and (xid := response.headers.get("X-Varnish")):
            # Without an X-Cache header: X-Varnish carries two transaction ids on a hit, one on a miss.
            status = "HIT" if len(xid.split()) >= 2 else "MISS"
        return status

    # --- purging ------------------------------------------------------------------------------------------

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(urls))
        results = await map_bounded(unique, self.slots, lambda u: self.guarded(u, lambda: self._purge_url(u)))
        return dict(zip(unique, results))

    async def _purge_url(self, url: str) -> Outcome:
        if reason := purge_refusal(url):
            return refused(reason)
        host, path = host_and_path(url)
        response, attempts = await self.send(self.options.purge_method, path, {"Host": host})
        code = response.status_code
        if code == 200 or code == 204:
            count = _count(response)
            if count == 0:
                return Outcome("not_cached", "varnish held no copy", attempts)
            if count is None:
                return Outcome("purged", "purged", attempts)
            return Outcome("purged", f"purged {_objects(count)}", attempts)
        if code == 404:
            if _NOT_CACHED_REASON.search(response.reason_phrase or "") or _NOT_CACHED_REASON.search(response.text[:200]):
                return Outcome("not_cached", "varnish held no copy", attempts)
            return Outcome("purged", "purged (varnish answered 404)", attempts)
        return Outcome("failed", self._refusal(self.options.purge_method, response), attempts)

    async def purge_tags(self, tags: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(tags))
        results: dict[str, Outcome] = {}
        valid = []
        for tag in unique:
            if not tag or any(c.isspace() for c in tag) or "," in tag:
                results[tag] = Outcome("failed", f"tag {tag!r} is empty or contains spaces/commas", attempts=0)
            else:
                valid.append(tag)
        groups = batches(valid, self.config.max_batch)
        for outcome in await map_bounded(groups, self.slots, self._purge_tag_batch):
            results.update(outcome)
        return {tag: results[tag] for tag in unique}

    async def _purge_tag_batch(self, group: Sequence[str]) -> dict[str, Outcome]:
        try:
            return await self._purge_tag_request(group)
        except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
            failed = self.failure(" ".join(group), exc)
            return {tag: failed for tag in group}

    async def _purge_tag_request(self, group: Sequence[str]) -> dict[str, Outcome]:
        header = "xkey-softpurge" if self.options.soft_purge else "xkey-purge"
        verb = "soft-purged" if self.options.soft_purge else "purged"
        response, attempts = await self.send(self.options.tag_purge_method, "/", {header: " ".join(group)})
        if response.status_code not in (200, 204):
            failed = Outcome("failed", self._refusal(self.options.tag_purge_method, response), attempts)
            return {tag: failed for tag in group}
        count = _count(response)
        if count == 0:
            return {tag: Outcome("not_cached", "no object had this tag", attempts) for tag in group}
        if count is None:
            detail = f"{verb} (varnish did not say how many objects)"
        elif len(group) == 1:
            detail = f"{verb} {_objects(count)}"
        else:
            detail = f"{verb} {_objects(count)} for {len(group)} tags in one request"
        return {tag: Outcome("purged", detail, attempts) for tag in group}

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        """Everything cached for the site's hosts: one ban per host matching every URL."""
        outcomes = [await self.ban(host, ".") for host in hosts]
        failed = [o for o in outcomes if o.status == "failed"]
        attempts = sum(o.attempts for o in outcomes)
        if failed:
            return Outcome("failed", "; ".join(o.detail for o in failed), attempts)
        return Outcome("purged", f"banned every URL on {', '.join(hosts)}", attempts)

    async def purge_prefixes(self, prefixes: Sequence[str]) -> dict[str, Outcome]:
        """One ban per prefix: the URL anchored at its start and matched literally, on that host only."""
        unique = list(dict.fromkeys(prefixes))
        return dict(zip(unique, await map_bounded(unique, self.slots, self._ban_prefix)))

    async def _ban_prefix(self, prefix: str) -> Outcome:
        try:
            host, path = prefix_parts(prefix)
        except ValueError as exc:
            return Outcome("failed", str(exc), attempts=0)
        outcome = await self.ban(host, "^" + literal_regex(path))
        if outcome.status == "purged":
            outcome.detail = f"banned every URL under {path} on {host}"
        return outcome

    async def ban(self, host: str | None, regex: str) -> Outcome:
        """Ban every object whose URL (path+query) matches ``regex`` (and host ``host`` if given).

        ``host`` is matched exactly (anchored, escaped); ``regex`` is checked with Python's ``re`` first, which
        catches nearly everything PCRE would reject, so a typo fails here with a readable message."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FutureWarning for nested sets is not our user's concern
                re.compile(regex)
        except re.error as exc:
            return Outcome("failed", f"not a valid regular expression {regex!r}: {exc}", attempts=0)
        if not regex or any(c.isspace() for c in regex):
            # std.ban() takes the expression as words: a space would cut the regex (write \s instead).
            return Outcome("failed", f"a ban regex must be non-empty and without spaces (use \\s): {regex!r}", attempts=0)
        headers = {"X-Ban-Url": regex}
        if host:
            headers["X-Ban-Host"] = "^" + re.escape(host.lower()) + "$"

        async def work() -> Outcome:
            response, attempts = await self.send(self.options.ban_method, "/", headers)
            if response.status_code in (200, 204):
                where = f" on {host}" if host else ""
                return Outcome("purged", f"banned URLs matching {regex!r}{where}", attempts)
            if response.status_code == 400:
                reason = response.headers.get("X-Ban-Error") or response.reason_phrase or "bad request"
                return Outcome("failed", f"varnish rejected the ban {regex!r}: {reason}", attempts)
            return Outcome("failed", self._refusal(self.options.ban_method, response), attempts)

        return await self.guarded(f"ban {regex}", work)

    def _refusal(self, method: str, response: httpx.Response) -> str:
        code, reason = response.status_code, response.reason_phrase or ""
        if code in (401, 403):
            return f"varnish refused {method} (HTTP {code} {reason}): is this host in the VCL's purge ACL?"
        if code in (405, 501):
            return f"varnish does not accept {method} (HTTP {code} {reason}): the VCL does not handle it"
        return f"varnish answered {method} with HTTP {code} {reason}".rstrip()
