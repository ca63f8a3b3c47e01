"""Cloudflare: ``POST /client/v4/zones/{zone_id}/purge_cache`` by files (URLs), tags, prefixes, hosts or everything.

One kind per request, at most ``max_items_per_request`` items (100; 500 on Enterprise; note Cloudflare has also
enforced 30 URLs per request on Free/Pro/Business zones — an oversize 400 is split in half until it fits). The
answer is the API envelope ``{"success", "errors": [{"code", "message"}], "messages", "result": {"id"}}``.

Cloudflare accepting a purge only means it is queued: ``verify`` fetches the page through the CDN at the
``verify_endpoint`` option (with the page's Host) and compares it with the origin, ``CF-Cache-Status`` as evidence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import httpx
from pydantic import Field

from agent.config import LayerConfig
from agent.layers.api import ApiCacheLayer, scrub
from agent.layers.base import Capability, Outcome, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.retry import with_retries
from agent.layers.wire import prefix_parts, purge_refusal, wire_url

DEFAULT_ENDPOINT = "https://api.cloudflare.com"
AUTH_CODES = {9103, 9106, 9109, 10000, 10001}
# Errors about the request as a whole (zone, route, auth): splitting the batch cannot help.
WHOLE_REQUEST_CODES = AUTH_CODES | {1001, 1012, 7000, 7003}
PurgeKind = Literal["files", "tags", "prefixes", "hosts"]
# Cloudflare's documented limits for purge by prefix: 30 prefixes a request, 31 path separators a prefix.
MAX_PREFIXES_PER_REQUEST = 30
MAX_PREFIX_SEPARATORS = 31
_KIND_WORD = {"files": "URL", "tags": "tag", "prefixes": "prefix", "hosts": "host"}


class CloudflareLayer(ApiCacheLayer):
    kind = "cloudflare"
    api_name = "Cloudflare API"
    capabilities = frozenset(
        {Capability.PURGE_URL, Capability.PURGE_TAG, Capability.PURGE_PREFIX, Capability.PURGE_ALL, Capability.VERIFY}
    )

    default_endpoint = DEFAULT_ENDPOINT

    class Options(ApiCacheLayer.Options):
        zone_id: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$")
        max_items_per_request: int = Field(default=100, ge=1, le=500)
        cache_status_header: str = "CF-Cache-Status"
        purge_all_by: Literal["everything", "hosts"] = "everything"

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        token = self.config.credentials.get("api_token")
        self._token = token.get_secret_value() if token is not None else ""

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        if config.endpoint is None:
            config = config.model_copy(update={"endpoint": DEFAULT_ENDPOINT})
        super().check_config(index, config)
        if "api_token" not in config.credentials:
            raise ValueError(f"layers[{index}].credentials.api_token: required for a cloudflare layer (a scoped API token)")

    def items_per_request(self, operation: str) -> int:
        if operation == "purge_prefix":
            return min(self.batch_size, MAX_PREFIXES_PER_REQUEST)
        return self.batch_size

    @property
    def batch_size(self) -> int:
        """``max_items_per_request``, or a smaller ``max_batch`` if the configuration sets one explicitly."""
        size = self.options.max_items_per_request
        if "max_batch" in self.config.model_fields_set:
            size = min(size, self.config.max_batch)
        return max(1, size)

    # --- purging ------------------------------------------------------------------------------------------

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        """One ``files`` purge per page. A URL with ``*`` is refused, never turned into a prefix purge here: a
        prefix is a scope of its own, planned (and approved) as one."""
        unique = list(dict.fromkeys(urls))
        results: dict[str, Outcome] = {}
        files: dict[str, list[str]] = {}  # the URL Cloudflare is given -> the URLs asked for that it stands for
        for url in unique:
            if reason := purge_refusal(url):
                results[url] = refused(reason)
            else:
                files.setdefault(wire_url(url), []).append(url)
        for sent, outcome in (await self._purge("files", list(files))).items():
            results.update({url: outcome for url in files[sent]})
        return {url: results[url] for url in unique}

    async def purge_tags(self, tags: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(tags))
        results = {t: Outcome("failed", f"tag {t!r} is empty or contains a comma", attempts=0) for t in unique
                   if not t.strip() or "," in t}
        results.update(await self._purge("tags", [t for t in unique if t not in results]))
        return {t: results[t] for t in unique}

    def prefix_problem(self, prefix: str) -> str | None:
        problem = super().prefix_problem(prefix)
        if problem:
            return problem
        host, path = prefix_parts(prefix)
        if not path.endswith("/"):
            # Cloudflare matches a prefix at path separators: /products would not clear /products-sale.
            return f"Cloudflare purges a prefix only up to a '/': write https://{host}{path.rsplit('/', 1)[0]}/*"
        if path.count("/") > MAX_PREFIX_SEPARATORS:
            return f"Cloudflare takes at most {MAX_PREFIX_SEPARATORS} path separators in a prefix"
        return None

    async def purge_prefixes(self, prefixes: Sequence[str]) -> dict[str, Outcome]:
        """``https://shop.example/products/*`` is sent as the prefix ``shop.example/products/`` (no scheme)."""
        unique = list(dict.fromkeys(prefixes))
        results: dict[str, Outcome] = {}
        sent: dict[str, str] = {}  # Cloudflare prefix -> the prefix we were given
        for prefix in unique:
            problem = self.prefix_problem(prefix)
            if problem:
                results[prefix] = Outcome("failed", problem, attempts=0)
                continue
            host, path = prefix_parts(prefix)
            sent[host + path] = prefix
        outcomes = await self._purge_limited("prefixes", list(sent), MAX_PREFIXES_PER_REQUEST)
        results.update({sent[item]: outcome for item, outcome in outcomes.items()})
        return {prefix: results[prefix] for prefix in unique}

    async def purge_hosts(self, hosts: Sequence[str]) -> dict[str, Outcome]:
        return await self._purge("hosts", list(dict.fromkeys(hosts)))

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        if self.options.purge_all_by == "hosts":
            outcomes = await self.purge_hosts(hosts)
            failed = [f"{h}: {o.detail}" for h, o in outcomes.items() if o.status == "failed"]
            attempts = max((o.attempts for o in outcomes.values()), default=0)
            if failed:
                return Outcome("failed", "; ".join(failed), attempts)
            return Outcome("purged", f"Cloudflare accepted a purge of every page on {', '.join(hosts)} (queued)", attempts)
        try:
            answer, attempts = await self._post({"purge_everything": True})
        except Exception as exc:  # noqa: BLE001
            return self._exception_outcome("everything", exc)
        ok, detail = self._judge_answer(answer)
        if ok:
            return Outcome("purged", f"Cloudflare accepted purge_everything for zone {self.options.zone_id}{detail} "
                           "(queued)", attempts)
        return Outcome("failed", detail, attempts)

    async def _purge(self, kind: PurgeKind, items: list[str]) -> dict[str, Outcome]:
        return await self._purge_limited(kind, items, self.batch_size)

    async def _purge_limited(self, kind: PurgeKind, items: list[str], size: int) -> dict[str, Outcome]:
        if not items:
            return {}
        results: dict[str, Outcome] = {}
        for group_result in await map_bounded(
            batches(items, min(size, self.batch_size)), self.slots,
            lambda group: self._purge_batch(kind, list(group)),
        ):
            results.update(group_result)
        return results

    async def _purge_batch(self, kind: PurgeKind, group: list[str], spent: int = 0) -> dict[str, Outcome]:
        """One request; an oversize or item-level 400/413 is split in half down to single items."""
        try:
            answer, attempts = await self._post({kind: group})
        except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
            failed = self._exception_outcome(" ".join(group), exc)
            failed.attempts += spent
            return {item: failed for item in group}
        attempts += spent
        ok, detail = self._judge_answer(answer)
        if ok:
            word = _KIND_WORD[kind] + ("" if len(group) == 1 else "es" if kind == "prefixes" else "s")
            queued = f"Cloudflare accepted the purge{detail} (queued; {len(group)} {word} in one request)"
            return {item: Outcome("purged", queued, attempts) for item in group}
        splittable = answer.status_code in (400, 413) and not (set(self._codes(answer)) & WHOLE_REQUEST_CODES)
        if splittable and len(group) > 1:
            half = len(group) // 2
            first, second = await map_bounded(
                [group[:half], group[half:]], 2, lambda part: self._purge_batch(kind, part, attempts)
            )
            return {**first, **second}
        return {item: Outcome("failed", detail, attempts) for item in group}

    # --- the API ------------------------------------------------------------------------------------------

    @property
    def purge_endpoint(self) -> str:
        return f"{self.endpoint}/client/v4/zones/{self.options.zone_id}/purge_cache"

    async def _post(self, body: dict[str, Any]) -> tuple[httpx.Response, int]:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        payload = json.dumps(body).encode()

        async def attempt() -> httpx.Response:
            return await self.exchange("POST", self.purge_endpoint, headers, payload)

        return await with_retries(attempt, retries=self.config.retries, limiter=self.limiter)

    @staticmethod
    def _envelope(response: httpx.Response) -> dict[str, Any] | None:
        try:
            data = response.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _codes(self, response: httpx.Response) -> list[int]:
        data = self._envelope(response) or {}
        codes = []
        for error in data.get("errors") or []:
            if isinstance(error, dict) and isinstance(error.get("code"), int):
                codes.append(error["code"])
        return codes

    def _judge_answer(self, response: httpx.Response) -> tuple[bool, str]:
        """(accepted, detail): detail is " (id …)" when accepted, else why not — safe to show."""
        data = self._envelope(response)
        code = response.status_code
        if data is not None and 200 <= code < 300 and data.get("success") is True:
            result = data.get("result") or {}
            purge_id = result.get("id") if isinstance(result, dict) else None
            return True, f" (id {purge_id})" if purge_id else ""
        errors = []
        for error in (data or {}).get("errors") or []:
            if isinstance(error, dict):
                errors.append(f"{error.get('code', '?')}: {error.get('message', '').strip()}".strip())
        api_says = "; ".join(errors)
        if code in (401, 403) or set(self._codes(response)) & AUTH_CODES:
            detail = f"Cloudflare rejected the API token (HTTP {code}" + (f", {api_says})" if api_says else ")")
            detail += ": check credentials.api_token and that it has Cache Purge permission on this zone"
        elif 200 <= code < 300:
            detail = "Cloudflare did not confirm the purge" + (f": {api_says}" if api_says else " (success is not true)")
        elif api_says:
            detail = f"Cloudflare refused the purge (HTTP {code}): {api_says}"
        elif code == 413:
            detail = "Cloudflare refused the purge: HTTP 413 request too large"
        else:
            detail = f"Cloudflare answered HTTP {code} {response.reason_phrase}".rstrip()
        return False, scrub(detail, self._secrets)

    # --- observe / verify through the CDN -----------------------------------------------------------------

