"""A generic in-house cache with an HTTP invalidation hook: one request per URL, or ``{"urls": [...]}`` in batches.

Placeholders in ``url_template``: ``{endpoint}``, ``{url}``, ``{host}``, ``{path}`` (values URL-encoded; ``{path}``,
already percent-encoded like every URL cachebot handles, keeps its slashes and escapes). Values come from the
normalised URL, so they are ASCII and hold no dot segment; the filled-in request must stay under the template's
fixed start. ``headers`` and ``body_template`` take the same placeholders plus ``{credentials.NAME}``
(secrets go in headers or the body, never in the URL, which ends up in logs); in ``body_template`` values are
JSON-escaped, and in batch mode ``{urls}`` is the JSON array of URLs. Any answer in ``expected_status`` counts as
accepted; 429 and 5xx are retried (honouring ``Retry-After``). With a ``verify_endpoint`` the layer can verify by
fetching through the cache like any HTTP cache; without one it can only report the hook accepted the purge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field, field_validator

from agent.config import LayerConfig
from agent.layers.api import ApiCacheLayer, scrub
from agent.layers.base import Capability, Outcome, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.retry import with_retries
from agent.layers.wire import check_request_path, host_and_path, purge_refusal, wire_url
from agent.urls import UnsafePath

_PLACEHOLDER = re.compile(r"\{(endpoint|url|urls|host|path|credentials\.([A-Za-z0-9_-]+))\}")
_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_PER_URL = {"url", "host", "path"}
_SAMPLE_URL = "https://shop.example/a/caf\u00e9?c=1"  # a non-ASCII path too: every value must stay ASCII


def _names(template: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(template)}


def _fill(template: str, values: Mapping[str, str], escape: Callable[[str, str], str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"unknown placeholder {{{name}}}")
        return escape(name, values[name])

    return _PLACEHOLDER.sub(one, template)


def _url_escape(name: str, value: str) -> str:
    if name == "endpoint":
        return value
    if name == "path":
        # Already percent-encoded (agent.urls): keep its escapes and slashes, so a hook that decodes the request
        # path once sees the page's path as a browser would; its '?' and what follows are encoded.
        return quote(value, safe="/%")
    return quote(value, safe="")


def _json_escape(name: str, value: str) -> str:
    if name == "urls":
        return value  # already a JSON array
    return json.dumps(value)[1:-1]


def _raw(name: str, value: str) -> str:
    return value


class WebhookLayer(ApiCacheLayer):
    kind = "webhook"
    api_name = "webhook"
    # PURGE_URL always; VERIFY too when a verify_endpoint is configured (set per instance).
    capabilities = frozenset({Capability.PURGE_URL})

    class Options(ApiCacheLayer.Options):
        method: str = "POST"
        url_template: str
        headers: dict[str, str] = Field(default_factory=dict)
        body_template: str | None = None
        expected_status: list[int] = Field(default_factory=lambda: [200, 202, 204], min_length=1)
        batch: bool = False
        cache_status_header: str = "X-Cache"

        @field_validator("method")
        @classmethod
        def _method(cls, value: str) -> str:
            if not _TOKEN.match(value):
                raise ValueError(f"{value!r} is not an HTTP method name")
            return value.upper()

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        if self.options.verify_endpoint:
            self.capabilities = frozenset({Capability.PURGE_URL, Capability.VERIFY})  # type: ignore[misc]
        self._credentials = {f"credentials.{k}": v.get_secret_value() for k, v in config.credentials.items()}

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        super().check_config(index, config)
        options = cls.Options.model_validate(config.options)
        where = f"layers[{index}].options"
        known = {f"credentials.{k}" for k in config.credentials}
        url_names = _names(options.url_template)
        if any(n.startswith("credentials.") for n in url_names):
            raise ValueError(f"{where}.url_template: put credentials in headers or body_template, not in the URL")
        per_request = [("url_template", options.url_template), *((f"headers.{k}", v) for k, v in options.headers.items())]
        if options.body_template is not None:
            per_request.append(("body_template", options.body_template))
        for key, template in per_request:
            for name in _names(template):
                if name.startswith("credentials.") and name not in known:
                    raise ValueError(f"{where}.{key}: {{{name}}} is not in this layer's credentials")
                if options.batch and name in _PER_URL:
                    raise ValueError(f"{where}.{key}: {{{name}}} names one URL, but batch is true (use {{urls}} in body_template)")
                if not options.batch and name == "urls":
                    raise ValueError(f"{where}.{key}: {{urls}} needs batch: true")
        if not options.batch and not any(_names(t) & _PER_URL for _, t in per_request):
            raise ValueError(f"{where}.url_template: must contain {{url}}, {{host}} or {{path}} (or the body_template must)")
        if options.batch and options.body_template is not None and "urls" not in _names(options.body_template):
            raise ValueError(f"{where}.body_template: must contain {{urls}} when batch is true")
        layer = cls(config)
        sample = [_SAMPLE_URL, _SAMPLE_URL + "&d=2"]
        try:
            target, _, body = layer._render(sample if options.batch else [_SAMPLE_URL])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{where}.url_template: does not give an http(s) URL (it starts with {{endpoint}}?)")
        if body is not None:
            try:
                json.loads(body)
            except ValueError as exc:
                raise ValueError(f"{where}.body_template: not valid JSON once filled in: {exc}") from None

    @property
    def client(self) -> httpx.AsyncClient:
        client = super().client
        client.auth = None  # credentials go only where headers/body_template put them (never to a verify_endpoint)
        return client

    # --- purging ------------------------------------------------------------------------------------------

    def fixed_prefix(self) -> str:
        """The start of ``url_template`` that no URL can change (up to the first placeholder after {endpoint}):
        every request stays under it."""
        template = self.options.url_template
        first = next((m.start() for m in _PLACEHOLDER.finditer(template) if m.group(1) != "endpoint"), len(template))
        return _fill(template[:first], {"endpoint": self.endpoint}, _url_escape)

    def _render(self, urls: Sequence[str]) -> tuple[str, dict[str, str], str | None]:
        """(request URL, headers, body) for one URL, or for a batch of URLs when ``batch`` is set.

        Values come from the normalised URL (``agent.urls``): pure ASCII, so ``{url}`` in a header is always
        sendable, and free of dot segments. Raises ``UnsafePath`` when the filled-in request URL could still be
        resolved out of ``fixed_prefix`` (a ``/../`` inside a query string placed in the path, say).
        """
        values = {"endpoint": self.endpoint, **self._credentials}
        if self.options.batch:
            values["urls"] = json.dumps([wire_url(url) for url in urls])
        else:
            host, path = host_and_path(urls[0])
            values.update(url=wire_url(urls[0]), host=host, path=path)
        public = {k: v for k, v in values.items() if not k.startswith("credentials.")}
        target = _fill(self.options.url_template, public, _url_escape)
        self._check_target(target)
        headers = {name: _fill(value, values, _raw) for name, value in self.options.headers.items()}
        if self.options.body_template is not None:
            body: str | None = _fill(self.options.body_template, values, _json_escape)
        elif self.options.batch:
            body = json.dumps({"urls": [wire_url(url) for url in urls]})
        else:
            body = None
        if body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return target, headers, body

    def _check_target(self, target: str) -> None:
        prefix = self.fixed_prefix()
        if not target.startswith(prefix):
            raise UnsafePath(f"the webhook request would leave {prefix!r}")
        # No '.' or '..' segment, even percent-decoded, that a client or the hook could resolve out of the prefix
        check_request_path(urlsplit(target).path or "/", urlsplit(self.endpoint).path.rstrip("/") or "/")

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(urls))
        results: dict[str, Outcome] = {}
        valid = []
        for url in unique:
            if reason := purge_refusal(url):
                results[url] = refused(reason)
            else:
                valid.append(url)
        groups = batches(valid, self.config.max_batch) if self.options.batch else [[u] for u in valid]
        for outcome in await map_bounded(groups, self.slots, self._purge_group):
            results.update(outcome)
        return {url: results[url] for url in unique}

    async def _purge_group(self, group: Sequence[str]) -> dict[str, Outcome]:
        outcome = await self._send_group(group)
        return {url: outcome for url in group}

    async def _send_group(self, group: Sequence[str]) -> Outcome:
        try:
            target, headers, body = self._render(group)
        except UnsafePath as exc:
            return refused(str(exc))
        except ValueError as exc:
            return Outcome("failed", f"webhook templates: {exc}", attempts=0)
        content = body.encode() if body is not None else None

        async def attempt() -> httpx.Response:
            return await self.client.request(self.options.method, target, content=content, headers=headers)

        try:
            response, attempts = await with_retries(attempt, retries=self.config.retries, limiter=self.limiter)
        except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
            return self._exception_outcome("the batch", exc)
        code = response.status_code
        if code in self.options.expected_status:
            together = "" if len(group) == 1 else f" ({len(group)} URLs in one request)"
            return Outcome("purged", f"webhook accepted the invalidation (HTTP {code}){together}", attempts)
        if code in (401, 403):
            return Outcome("failed", f"webhook rejected our credentials (HTTP {code}): check the layer's headers and "
                           "credentials", attempts)
        said = " ".join(response.text[:200].split())
        detail = f"webhook answered HTTP {code} {response.reason_phrase}".rstrip()
        if said:
            detail += f": {said}"
        return Outcome("failed", scrub(detail, self._secrets), attempts)

    # --- observe / verify through the cache ---------------------------------------------------------------

