"""memcached used as an application cache: purging a page deletes the keys derived from its URL.

``key_templates`` are the Redis layer's (``page:{host}{path}``; placeholders ``{host}``, ``{path}``,
``{path_only}``, ``{url}``) — but memcached cannot list or scan its keys, so a template with ``*`` is refused
when the configuration is loaded. Keys are deleted in pipelined batches of ``max_batch`` ``delete`` commands on
one connection; verification asks for the keys again (``get``) and is satisfied only when none is left.

The client is pymemcache (synchronous, run in a worker thread per batch); every call opens its own connection
with the layer's timeout, so nothing is shared between threads or event loops.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError, MemcacheIllegalInputError

from agent.config import LayerConfig
from agent.layers.base import CacheLayer, Capability, LayerUnavailable, Observation, Outcome, Verification, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.probe import body_hash
from agent.layers.redis import PLACEHOLDERS, check_template, url_values
from agent.layers.retry import backoff_delay
from agent.layers.wire import purge_refusal
from agent.urls import UnsafePath

T = TypeVar("T")
MAX_KEY_BYTES = 250  # memcached's limit; longer keys cannot exist, so they cannot be purged either


def check_memcached_key(key: str) -> str | None:
    """Why ``key`` cannot be a memcached key, or None when it can."""
    raw = key.encode("utf-8")
    if len(raw) > MAX_KEY_BYTES:
        return f"key {key[:60]!r}… is {len(raw)} bytes, longer than memcached's {MAX_KEY_BYTES}"
    if any(b <= 32 or b == 127 for b in raw):
        return f"key {key!r} contains a space or control character, which memcached keys cannot"
    if any(b > 127 for b in raw):
        return f"key {key!r} is not ASCII"
    return None


def describe_memcached_error(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, (ConnectionError, OSError)):
        return "connection failed"
    return type(exc).__name__


class MemcachedLayer(CacheLayer):
    kind = "memcached"
    capabilities = frozenset({Capability.PURGE_URL, Capability.VERIFY})
    verifies_against_origin = False  # checked by its keys, before any fetch refills them from the origin

    class Options(CacheLayer.Options):
        key_templates: list[str] = Field(min_length=1, description="keys holding a page, e.g. page:{host}{path}")
        key_prefix: str = ""

        @field_validator("key_templates")
        @classmethod
        def _templates(cls, value: list[str]) -> list[str]:
            for template in value:
                if "*" in template:
                    raise ValueError(
                        f"{template!r}: memcached cannot list or scan keys, so a '*' pattern can never be "
                        "purged; name the exact keys (one template per key)"
                    )
            return [check_template(t, PLACEHOLDERS) for t in value]

        @field_validator("key_prefix")
        @classmethod
        def _prefix(cls, value: str) -> str:
            if "{" in value or "}" in value:
                raise ValueError("the key prefix is literal: no placeholders or braces")
            if "*" in value:
                raise ValueError("memcached cannot scan keys: the prefix cannot hold a '*' pattern")
            return value

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        parts = urlsplit(config.endpoint or "")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 11211

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        super().check_config(index, config)
        parts = urlsplit(config.endpoint or "")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "memcached" or not parts.hostname or port == -1 or parts.path not in ("", "/"):
            raise ValueError(
                f"layers[{index}].endpoint: a memcached layer needs a memcached://host:port address "
                "such as memcached://127.0.0.1:11211"
            )

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # --- plumbing ---------------------------------------------------------------------------------------

    def _connect(self) -> Client:
        timeout = self.config.timeout_seconds
        return Client((self.host, self.port), connect_timeout=timeout, timeout=timeout, no_delay=True)

    def _with_client(self, op: Callable[[Client], T]) -> T:
        client = self._connect()
        try:
            return op(client)
        finally:
            client.close()

    async def _retrying(self, op: Callable[[Client], T]) -> tuple[T, int]:
        """``op`` in a worker thread with ``config.retries`` retries on network errors; ``LayerUnavailable``."""
        retries = self.config.retries
        last = ""
        for number in range(1, retries + 2):
            try:
                return await asyncio.to_thread(self._with_client, op), number
            except MemcacheIllegalInputError:
                raise
            except (OSError, MemcacheError) as exc:
                last = describe_memcached_error(exc)
            if number > retries:
                break
            await asyncio.sleep(backoff_delay(number))
        raise LayerUnavailable(f"could not reach memcached at {self.address}: {last} after {retries + 1} attempts")

    def keys_for(self, url: str) -> list[str]:
        values = url_values(url)
        return list(dict.fromkeys(self.options.key_prefix + t.format(**values) for t in self.options.key_templates))

    # --- purging ------------------------------------------------------------------------------------------

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        unique = list(dict.fromkeys(urls))
        deleted = {url: 0 for url in unique}
        attempts = {url: 1 for url in unique}
        errors: dict[str, Outcome] = {}
        work: list[tuple[str, str]] = []
        for url in unique:
            if reason := purge_refusal(url):
                errors[url] = refused(reason)
                continue
            keys = self.keys_for(url)
            bad = next((why for why in map(check_memcached_key, keys) if why), None)
            if bad:
                errors[url] = Outcome("failed", f"cannot purge from memcached: {bad}", 0)
                continue
            work += [(url, key) for key in keys]

        async def delete_chunk(chunk: Sequence[tuple[str, str]]) -> None:
            commands = [b"delete " + key.encode() + b"\r\n" for _, key in chunk]

            def op(client: Client) -> list[bytes]:
                # Pipelined: every delete of the batch in one write, then one answer line each.
                return client._misc_cmd(commands, b"delete", False)  # noqa: SLF001 - no public pipelined delete

            try:
                answers, made = await self._retrying(op)
            except LayerUnavailable as exc:
                for url, _ in chunk:
                    errors.setdefault(url, Outcome("failed", str(exc), self.config.retries + 1))
                return
            except Exception as exc:  # noqa: BLE001 - becomes a failed Outcome
                for url, _ in chunk:
                    errors.setdefault(url, Outcome("failed", f"memcached at {self.address}: {type(exc).__name__}", 1))
                return
            for (url, _), answer in zip(chunk, answers):
                deleted[url] += answer == b"DELETED"
                attempts[url] = max(attempts[url], made)

        await map_bounded(batches(work, self.config.max_batch), self.slots, delete_chunk)

        results: dict[str, Outcome] = {}
        for url in unique:
            n = deleted[url]
            if url in errors:
                outcome = errors[url]
                if n:
                    outcome.detail += f" (deleted {n} keys before that)"
                results[url] = outcome
            elif n:
                results[url] = Outcome("purged", f"deleted {n} key" + ("" if n == 1 else "s"), attempts[url])
            else:
                results[url] = Outcome("not_cached", "no key existed", attempts[url])
        return results

    # --- observe / verify ---------------------------------------------------------------------------------

    async def _present(self, url: str) -> tuple[list[str], str | None]:
        keys = [k for k in self.keys_for(url) if check_memcached_key(k) is None]
        if not keys:
            return [], None
        found, _ = await self._retrying(lambda client: client.get_many(keys))
        present = [k for k in keys if k in found]
        digest = None
        if present:
            value = found[present[0]]
            digest = body_hash(value if isinstance(value, bytes) else str(value).encode())
        return present, digest

    async def observe(self, url: str) -> Observation:
        try:
            present, digest = await self._present(url)
        except (LayerUnavailable, UnsafePath) as exc:
            return Observation(reachable=False, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - observe never raises
            return Observation(reachable=False, error=f"memcached at {self.address}: {type(exc).__name__}")
        return Observation(reachable=True, cache_status="HIT" if present else "MISS", body_hash=digest)

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        try:
            present, _ = await self._present(url)
        except (LayerUnavailable, UnsafePath) as exc:
            return Verification(None, str(exc))
        except Exception as exc:  # noqa: BLE001
            return Verification(None, f"memcached at {self.address}: {type(exc).__name__}")
        if not present:
            return Verification(True, "keys gone")
        shown = ", ".join(present[:3]) + (" …" if len(present) > 3 else "")
        return Verification(False, f"still there: {shown}")
