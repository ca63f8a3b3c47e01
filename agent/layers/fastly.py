"""Fastly: ``POST /purge/{host}{path}`` per URL, ``POST /service/{id}/purge`` for up to 256 surrogate keys at once,
``POST /service/{id}/purge_all`` for everything; ``Fastly-Key`` authenticates, ``Fastly-Soft-Purge: 1`` marks
content stale instead of removing it.

Answers: ``{"status": "ok", "id": "…"}`` for a URL, a map key -> purge id for surrogate keys. Accepted is not
fresh: ``verify`` fetches the page through the CDN (``verify_endpoint``) and compares it with the origin; the
``X-Cache`` header lists one entry per node (``HIT, MISS`` with shielding) and the last one answered us. After a
soft purge the stale copy may be served once more, so verification goes by content (never by MISS alone).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field

from agent.config import LayerConfig
from agent.layers.api import ApiCacheLayer, scrub
from agent.layers.base import Capability, Observation, Outcome, Verification, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.retry import with_retries
from agent.layers.wire import host_and_path, purge_refusal

DEFAULT_ENDPOINT = "https://api.fastly.com"
MAX_KEYS_PER_REQUEST = 256
_PATH_SAFE = "/?&=%:@!$,;+~()[]'"  # keep the path (and query) as the cache keys it; escape only what breaks a URL


class FastlyLayer(ApiCacheLayer):
    kind = "fastly"
    api_name = "Fastly API"
    capabilities = frozenset({Capability.PURGE_URL, Capability.PURGE_TAG, Capability.PURGE_ALL, Capability.VERIFY})

    default_endpoint = DEFAULT_ENDPOINT

    class Options(ApiCacheLayer.Options):
        service_id: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$")
        soft_purge: bool = False
        max_keys_per_request: int = Field(default=MAX_KEYS_PER_REQUEST, ge=1, le=MAX_KEYS_PER_REQUEST)
        cache_status_header: str = "X-Cache"

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        key = self.config.credentials.get("api_key")
        self._key = key.get_secret_value() if key is not None else ""
        # A soft-purged object may be served (stale) once more while Fastly refetches it: keep looking a moment.
        self.verify_settle_seconds = 2.0 if self.options.soft_purge else 0.0

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        if config.endpoint is None:
            config = config.model_copy(update={"endpoint": DEFAULT_ENDPOINT})
        super().check_config(index, config)
        if "api_key" not in config.credentials:
            raise ValueError(f"layers[{index}].credentials.api_key: required for a fastly layer (an API token with purge scope)")

    def items_per_request(self, operation: str) -> int:
        return self.key_batch_size if operation == "purge_tag" else 1  # a URL purge is one request per URL

    @property
    def key_batch_size(self) -> int:
        size = self.options.max_keys_per_request
        if "max_batch" in self.config.model_fields_set:
            size = min(size, self.config.max_batch)
        return max(1, size)

    # --- purging ------------------------------------------------------------------------------------------

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(urls))
        results = await map_bounded(unique, self.slots, self._purge_url)
        return dict(zip(unique, results))

    async def _purge_url(self, url: str) -> Outcome:
        if reason := purge_refusal(url):
            return refused(reason)
        host, path = host_and_path(url)
        target = "/purge/" + host + quote(path, safe=_PATH_SAFE)
        try:
            # Only ever under /purge/<host>/: a dot segment here would reach /service/<id>/purge_all with our key.
            response, attempts = await self._post(target, None, prefix=f"/purge/{host}/")
        except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
            return self._exception_outcome(url, exc)
        data = self._json(response)
        if 200 <= response.status_code < 300 and isinstance(data, dict) and data.get("status") == "ok":
            return Outcome("purged", f"Fastly {self._verb} the URL (id {data.get('id', '?')})", attempts)
        return Outcome("failed", self._refusal(response), attempts)

    async def purge_tags(self, tags: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(tags))
        results = {t: Outcome("failed", f"surrogate key {t!r} is empty or contains spaces", attempts=0)
                   for t in unique if not t or any(c.isspace() for c in t)}
        valid = [t for t in unique if t not in results]
        for outcome in await map_bounded(batches(valid, self.key_batch_size), self.slots, self._purge_keys):
            results.update(outcome)
        return {t: results[t] for t in unique}

    async def _purge_keys(self, group: Sequence[str]) -> dict[str, Outcome]:
        try:
            response, attempts = await self._post(
                f"/service/{self.options.service_id}/purge", {"surrogate_keys": list(group)}, prefix="/service/"
            )
        except Exception as exc:  # noqa: BLE001
            failed = self._exception_outcome(" ".join(group), exc)
            return {key: failed for key in group}
        data = self._json(response)
        if not (200 <= response.status_code < 300 and isinstance(data, dict)):
            failed = Outcome("failed", self._refusal(response), attempts)
            return {key: failed for key in group}
        together = "" if len(group) == 1 else f"; {len(group)} keys in one request"
        results = {}
        for key in group:
            purge_id = data.get(key)
            if purge_id:
                results[key] = Outcome("purged", f"Fastly {self._verb} surrogate key (id {purge_id}{together})", attempts)
            else:
                results[key] = Outcome("failed", "Fastly did not acknowledge this surrogate key (no purge id)", attempts)
        return results

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        try:
            response, attempts = await self._post(
                f"/service/{self.options.service_id}/purge_all", None, soft=False, prefix="/service/"
            )
        except Exception as exc:  # noqa: BLE001
            return self._exception_outcome("everything", exc)
        data = self._json(response)
        if 200 <= response.status_code < 300 and isinstance(data, dict) and data.get("status") == "ok":
            return Outcome("purged", f"Fastly purged everything on service {self.options.service_id}", attempts)
        return Outcome("failed", self._refusal(response), attempts)

    # --- the API ------------------------------------------------------------------------------------------

    @property
    def _verb(self) -> str:
        return "soft-purged" if self.options.soft_purge else "purged"

    async def _post(
        self, path: str, body: dict[str, Any] | None, *, prefix: str, soft: bool | None = None
    ) -> tuple[httpx.Response, int]:
        """POST ``path`` (which must stay under ``prefix``) to the API with retries; raises ``UnsafePath`` before
        sending anything that could resolve elsewhere, ``LayerUnavailable`` when every attempt failed."""
        headers = {"Fastly-Key": self._key, "Accept": "application/json"}
        if self.options.soft_purge if soft is None else soft:
            headers["Fastly-Soft-Purge"] = "1"
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        url = self.target(path, prefix)

        async def attempt() -> httpx.Response:
            return await self.exchange("POST", url, headers, content)

        return await with_retries(attempt, retries=self.config.retries, limiter=self.limiter)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _refusal(self, response: httpx.Response) -> str:
        code = response.status_code
        data = self._json(response)
        said = ""
        if isinstance(data, dict):
            said = ": ".join(str(data[k]) for k in ("msg", "detail") if data.get(k))
        if code in (401, 403):
            detail = f"Fastly rejected the API key (HTTP {code}" + (f", {said})" if said else ")")
            detail += ": check credentials.api_key and that the token has purge scope for this service"
        elif said:
            detail = f"Fastly refused the purge (HTTP {code}): {said}"
        else:
            detail = f"Fastly answered HTTP {code} {response.reason_phrase}".rstrip()
        return scrub(detail, self._secrets)

    # --- observe / verify through the CDN -----------------------------------------------------------------

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        if unconfirmed := self.unconfirmed():
            return unconfirmed
        usable_origin = origin is not None and origin.reachable and origin.status_code is not None \
            and 200 <= origin.status_code < 300
        if self.options.soft_purge and not usable_origin:
            # A soft purge serves the stale copy again (even as MISS on a shield): only content can prove freshness.
            seen = await self.observe(url)
            status = seen.cache_status or "no cache status"
            return Verification(None, f"{status} after a soft purge, and no origin copy to compare: cannot tell if fresh")
        return await super().verify(url, origin)
