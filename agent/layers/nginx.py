"""nginx with ngx_cache_purge: ``GET <purge_path_prefix><path>`` with the page's Host purges one cache key.

200 = purged, 404 = that key was not cached, 403 = our address is not in the purge location's allow list.
One purge drops one variant (the one its own headers name): a page is purged as ``Accept-Encoding: identity`` and
once more per header set in its site's ``variants``.
No wildcards (the module can do partial keys only when built for it; Debian's 2.3 build is not), no tags.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import field_validator

from agent.layers.base import Capability, Outcome, refused
from agent.layers.batching import map_bounded
from agent.layers.http import HttpCacheLayer
from agent.layers.probe import variant_name
from agent.layers.wire import host_and_path, purge_refusal


class NginxLayer(HttpCacheLayer):
    kind = "nginx"
    capabilities = frozenset({Capability.PURGE_URL, Capability.VERIFY})

    class Options(HttpCacheLayer.Options):
        purge_path_prefix: str = "/purge"
        cache_status_header: str = "X-Cache-Status"

        @field_validator("purge_path_prefix")
        @classmethod
        def _prefix(cls, value: str) -> str:
            if not value.startswith("/") or "?" in value or "#" in value:
                raise ValueError("must be a path starting with '/' (like /purge), without '?' or '#'")
            return value.rstrip("/")

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(urls))
        results = await map_bounded(unique, self.slots, lambda u: self.guarded(u, lambda: self._purge(u)))
        return dict(zip(unique, results))

    async def _purge(self, url: str) -> Outcome:
        if reason := purge_refusal(url):
            return refused(reason)
        host, path = host_and_path(url)
        # A purge removes only the variant its own headers name (when the cache keeps variants apart: the demo's
        # key holds the encoding, and nginx's own Vary handling does the same), so ask once as verification looks
        # at the page (identity) and once per configured variant, with the same headers verification sends.
        plain = {"Accept-Encoding": "identity"}
        asks = [("", plain)] + [(variant_name(v), {**plain, **v}) for v in self.variants.get(host.lower(), [])]
        said = [(name, await self._purge_as(path, {**headers, "Host": host})) for name, headers in asks]
        attempts = sum(outcome.attempts for _, outcome in said)
        failed = [(name, outcome) for name, outcome in said if outcome.status == "failed"]
        if failed:
            name, outcome = failed[0]
            return Outcome("failed", f"variant {name}: {outcome.detail}" if name else outcome.detail, attempts)
        if any(outcome.status == "purged" for _, outcome in said):
            return Outcome("purged", "purged", attempts)
        return Outcome("not_cached", said[0][1].detail, attempts)

    async def _purge_as(self, path: str, headers: dict[str, str]) -> Outcome:
        prefix = self.options.purge_path_prefix
        # nginx resolves dot segments (also %2e%2e) before matching the purge location: the path must hold none,
        # or GET /purge/../about would fetch /about through the cache and look like a successful purge.
        response, attempts = await self.send("GET", prefix + path, headers, prefix=prefix + "/")
        code = response.status_code
        if code == 200:
            return Outcome("purged", "purged", attempts)
        if code == 404 and self.options.cache_status_header in response.headers:
            # The purge module never adds the cache status header; the proxying location does.
            return Outcome(
                "failed",
                f"nginx passed {self.options.purge_path_prefix}{path} upstream instead of purging (HTTP 404 with "
                f"{self.options.cache_status_header}): is the purge location configured at that prefix?",
                attempts,
            )
        if code == 404:
            return Outcome("not_cached", "nginx held no copy (nothing to do)", attempts)
        if code == 403:
            return Outcome("failed", "nginx refused the purge (allow list): add this host to the purge location", attempts)
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        return Outcome("failed", f"nginx answered the purge with HTTP {code}{reason}", attempts)
