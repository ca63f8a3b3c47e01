"""What purge-API backends share (Cloudflare, Fastly, a webhook): the API that takes purges is not where
pages are served, so verification looks through an optional ``verify_endpoint``, and every message they
build is scrubbed of the credentials they hold."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import field_validator

from agent.config import LayerConfig
from agent.layers.base import LayerUnavailable, Observation, Outcome, Verification, refused
from agent.layers.http import HttpCacheLayer
from agent.layers.probe import observe_http
from agent.urls import UnsafePath


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (a server may echo a token back)."""
    for secret in secrets:
        if secret and len(secret) >= 4:  # shorter values would blank out ordinary words
            text = text.replace(secret, "***")
    return text


def validate_verify_endpoint(value: str | None, example: str = "https://203.0.113.7") -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be an http:// or https:// address without query or fragment, like {example}")
    if "@" in parts.netloc:
        raise ValueError(f"must not contain a user name or password (user:password@), like {example}")
    return value.rstrip("/")


class ApiCacheLayer(HttpCacheLayer):
    """Names itself in messages as ``api_name``; ``default_endpoint`` is the vendor's API when none is set."""

    api_name: ClassVar[str]
    default_endpoint: ClassVar[str | None] = None

    class Options(HttpCacheLayer.Options):
        verify_endpoint: str | None = None

        @field_validator("verify_endpoint")
        @classmethod
        def _verify_endpoint(cls, value: str | None) -> str | None:
            return validate_verify_endpoint(value)

    def __init__(self, config: LayerConfig):
        if config.endpoint is None and self.default_endpoint:
            config = config.model_copy(update={"endpoint": self.default_endpoint})
        super().__init__(config)
        self._secrets = [secret.get_secret_value() for secret in config.credentials.values()]

    def _exception_outcome(self, key: str, exc: Exception) -> Outcome:
        if isinstance(exc, UnsafePath):
            return refused(scrub(str(exc), self._secrets))
        if isinstance(exc, LayerUnavailable):
            message = str(exc)
            if message.startswith("HTTP "):
                detail = f"{self.api_name} at {self.address} kept answering {message}"
            else:
                detail = f"could not reach the {self.api_name} at {self.address}: {message}"
            return Outcome("failed", scrub(detail, self._secrets), attempts=self.config.retries + 1)
        return Outcome("failed", scrub(f"{self.kind} purge of {key} failed unexpectedly: {type(exc).__name__}: {exc}",
                                       self._secrets))

    async def observe(self, url: str) -> Observation:
        if not self.options.verify_endpoint:
            return Observation(reachable=False, error="no verify_endpoint configured")
        return await observe_http(
            self.client, self.options.verify_endpoint, url, cache_status_header=self.options.cache_status_header
        )

    def unconfirmed(self) -> Verification | None:
        """Without a verify_endpoint nothing can confirm the purge: say so instead of guessing."""
        if self.options.verify_endpoint:
            return None
        return Verification(None, f"the {self.api_name} accepted the purge; no verify_endpoint configured to confirm")

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        return self.unconfirmed() or await super().verify(url, origin)
