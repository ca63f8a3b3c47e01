"""Redis used as an application cache: purging a page deletes the keys derived from its URL.

``key_templates`` say which keys hold a page (``demo:page:{host}{path_only}``); a template with ``*`` is a
pattern, deleted with ``SCAN MATCH`` (never ``KEYS``, which blocks the server). Optional tag sets: with
``tag_set_template: "tagset:{tag}"`` the members of that set are the keys to delete for a tag.

Passwords never appear in messages: endpoints are shown redacted (``redis://:***@host:6379/0``).
"""

from __future__ import annotations

import asyncio
import re
import string
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from agent.config import LayerConfig
from agent.layers.base import CacheLayer, Capability, LayerUnavailable, Observation, Outcome, Verification, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.probe import body_hash
from agent.layers.retry import backoff_delay
from agent.layers.wire import host_and_path, prefix_parts, purge_refusal, wire_url
from agent.urls import UnsafePath

if TYPE_CHECKING:
    import redis.asyncio as aioredis

# The client library (redis-py: a sizeable import) is imported by the functions that talk to Redis, not with this
# module: loading a config that names a redis layer imports this module for its Options, and `cachebot history`
# loads the config without ever purging (as cloudfront.py does with boto3).

T = TypeVar("T")
PLACEHOLDERS = ("host", "path", "url", "path_only")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_MAX_VALUE_BYTES = 8 * 1024 * 1024


def template_fields(template: str) -> list[str]:
    """Placeholder names in ``template``; ``ValueError`` for positional/attribute/format-spec fields."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise ValueError(f"{template!r}: placeholders take no format spec or conversion ({{{field}...}})")
        names.append(field)
    return names


def check_template(template: str, allowed: Sequence[str]) -> str:
    if not template:
        raise ValueError("a key template must not be empty")
    for name in template_fields(template):
        if name not in allowed:
            shown = "{}" if name == "" else "{" + name + "}"
            raise ValueError(
                f"{template!r}: unknown placeholder {shown}; use " + ", ".join("{" + a + "}" for a in allowed)
            )
    return template


def url_values(url: str) -> dict[str, str]:
    """The placeholder values for one URL: ``host`` (lower case), ``path`` (with query), ``path_only``, ``url``.

    From the normalised URL (``agent.urls``), the form a browser asks for and so the one an application keys
    its cache on: ``/x/../about`` is ``/about``. Raises ``UnsafePath`` for a URL no layer may purge."""
    if reason := purge_refusal(url):
        raise UnsafePath(reason)
    host, path = host_and_path(url)
    return {"host": host, "path": path, "path_only": path.split("?", 1)[0], "url": wire_url(url)}


def glob_escape(value: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", value)


def redact(endpoint: str) -> str:
    """``redis://user:secret@h:6379/0`` -> ``redis://user:***@h:6379/0``."""
    parts = urlsplit(endpoint)
    if parts.password is None and "@" not in parts.netloc:
        return endpoint
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, "", ""))


def describe_redis_error(exc: BaseException) -> str:
    """A short reason that never echoes connection details (which may hold credentials)."""
    from redis import exceptions as rexc

    text = str(exc).lower()
    if isinstance(exc, (rexc.TimeoutError, asyncio.TimeoutError, TimeoutError)) or "timeout" in text or "timed out" in text:
        return "timed out"
    chained = exc.__cause__ or exc.__context__
    if isinstance(chained, ConnectionRefusedError) or "refused" in text or "error 111 " in text:
        return "connection refused"
    if "no such file" in text:
        return "no such socket"
    if "name or service" in text or "nodename" in text:
        return "unknown host"
    if isinstance(exc, rexc.ConnectionError):
        return "connection failed"
    return type(exc).__name__


class RedisLayer(CacheLayer):
    kind = "redis"
    capabilities = frozenset({Capability.PURGE_URL, Capability.PURGE_PREFIX, Capability.PURGE_ALL, Capability.VERIFY})
    verifies_against_origin = False  # checked by its keys, before any fetch refills them from the origin

    class Options(CacheLayer.Options):
        key_templates: list[str] = Field(min_length=1, description="keys holding a page; * makes a SCAN pattern")
        key_prefix: str = ""
        tag_set_template: str | None = Field(default=None, description="a set per tag, e.g. tagset:{tag}")

        @field_validator("key_templates")
        @classmethod
        def _templates(cls, value: list[str]) -> list[str]:
            return [check_template(t, PLACEHOLDERS) for t in value]

        @field_validator("key_prefix")
        @classmethod
        def _prefix(cls, value: str) -> str:
            if "{" in value or "}" in value:
                raise ValueError("the key prefix is literal: no placeholders or braces")
            return value

        @field_validator("tag_set_template")
        @classmethod
        def _tag_set(cls, value: str | None) -> str | None:
            if value is None:
                return None
            check_template(value, ("tag",))
            if "tag" not in template_fields(value):
                raise ValueError(f"{value!r}: needs the {{tag}} placeholder")
            if "*" in value:
                raise ValueError(f"{value!r}: a tag set name cannot be a pattern")
            return value

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        if self.options.tag_set_template:
            # Instance-level: tags are purgeable only when the application keeps tag sets.
            self.capabilities = frozenset(type(self).capabilities | {Capability.PURGE_TAG})
        self.endpoint = config.endpoint or ""
        self._client: aioredis.Redis | None = None
        self._purged_at: dict[str, float] = {}  # url -> when this instance last removed (or found no) keys

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        super().check_config(index, config)
        scheme = urlsplit(config.endpoint or "").scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"layers[{index}].endpoint: a redis layer needs a redis://, rediss:// or unix:// address, "
                f"not {redact(config.endpoint or '')!r}"
            )

    # --- plumbing ---------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        parts = urlsplit(self.endpoint)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"

    @property
    def redacted_endpoint(self) -> str:
        return redact(self.endpoint)

    @property
    def client(self) -> aioredis.Redis:
        """Made on first use and closed by ``aclose``, on the one event loop the layer lives on (``open_layers``)."""
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            kwargs: dict = {
                "socket_timeout": self.config.timeout_seconds,
                "socket_connect_timeout": self.config.timeout_seconds,
                "retry": Retry(NoBackoff(), 0),  # we count attempts ourselves
                "decode_responses": False,
            }
            creds = self.config.credentials
            if "password" in creds:
                kwargs["password"] = creds["password"].get_secret_value()
            if "username" in creds:
                kwargs["username"] = creds["username"].get_secret_value()
            self._client = aioredis.Redis.from_url(self.endpoint, **kwargs)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - a pool whose server went away may fail to close; the step is done
                pass

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """``op`` with ``config.retries`` retries on connection errors/timeouts; raises ``LayerUnavailable``."""
        from redis import exceptions as rexc

        retries = self.config.retries
        last = ""
        for number in range(1, retries + 2):
            try:
                return await op(), number
            except rexc.AuthenticationError:
                raise LayerUnavailable(f"redis at {self.address} refused our credentials") from None
            except (rexc.ConnectionError, rexc.TimeoutError, OSError, asyncio.TimeoutError) as exc:
                last = describe_redis_error(exc)
            if number > retries:
                break
            await asyncio.sleep(backoff_delay(number))
        raise LayerUnavailable(f"could not reach redis at {self.address}: {last} after {retries + 1} attempts")

    def _failed(self, exc: Exception, deleted: int = 0) -> Outcome:
        from redis import exceptions as rexc

        if isinstance(exc, LayerUnavailable):
            detail, attempts = str(exc), self.config.retries + 1
        elif isinstance(exc, rexc.ResponseError):
            detail, attempts = f"redis at {self.address} answered an error: {exc}", 1
        else:
            detail, attempts = f"redis purge failed unexpectedly: {type(exc).__name__}", 1
        if deleted:
            detail += f" (deleted {deleted} keys before that)"
        return Outcome("failed", detail, attempts)

    def keys_for(self, url: str) -> tuple[list[str], list[str]]:
        """(exact keys, SCAN patterns) for one URL."""
        values = url_values(url)
        escaped = {k: glob_escape(v) for k, v in values.items()}
        exact, patterns = [], []
        for template in self.options.key_templates:
            if "*" in template:
                patterns.append(glob_escape(self.options.key_prefix) + template.format(**escaped))
            else:
                exact.append(self.options.key_prefix + template.format(**values))
        return list(dict.fromkeys(exact)), list(dict.fromkeys(patterns))

    async def _scan_delete(self, pattern: str, counter: list[int]) -> None:
        """Delete every key matching ``pattern`` with SCAN + DEL in batches; ``counter[0]`` += deleted."""
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= self.config.max_batch:
                counter[0] += await self.client.delete(*batch)
                batch = []
        if batch:
            counter[0] += await self.client.delete(*batch)

    def host_patterns(self, host: str) -> list[str]:
        """SCAN patterns matching every key this layer derives for pages on ``host``."""
        wildcard = {"host": glob_escape(host.lower()), "path": "*", "path_only": "*", "url": f"*://{glob_escape(host.lower())}*"}
        patterns = [glob_escape(self.options.key_prefix) + template.format(**wildcard) for template in self.options.key_templates]
        return list(dict.fromkeys(patterns))

    def prefix_patterns(self, prefix: str) -> list[str]:
        """SCAN patterns matching every key this layer derives for pages under ``prefix`` (``https://h/dir/*``):
        the prefix is escaped, so only the one ``*`` we add after it is a wildcard."""
        host, path = prefix_parts(prefix)
        scheme = urlsplit(prefix).scheme.lower()
        under = glob_escape(path) + "*"
        wildcard = {"host": glob_escape(host), "path": under, "path_only": under,
                    "url": f"{scheme}://{glob_escape(host)}{under}"}
        patterns = [glob_escape(self.options.key_prefix) + template.format(**wildcard) for template in self.options.key_templates]
        return list(dict.fromkeys(patterns))

    # --- purging ------------------------------------------------------------------------------------------

    async def purge_prefixes(self, prefixes: Sequence[str]) -> dict[str, Outcome]:
        """Every key of every page under each prefix, found with SCAN (never KEYS), deleted in batches."""
        unique = list(dict.fromkeys(prefixes))
        return dict(zip(unique, await map_bounded(unique, self.slots, self._purge_prefix)))

    async def _purge_prefix(self, prefix: str) -> Outcome:
        try:
            patterns = self.prefix_patterns(prefix)
        except ValueError as exc:
            return Outcome("failed", str(exc), attempts=0)
        counter = [0]  # survives a retry: keys deleted before a dropped connection still count
        attempts = 1
        try:
            for pattern in patterns:
                _, made = await self._retrying(lambda pattern=pattern: self._scan_delete(pattern, counter))
                attempts = max(attempts, made)
        except Exception as exc:  # noqa: BLE001 - becomes a failed Outcome
            return self._failed(exc, counter[0])
        under = prefix[:-1]
        if counter[0] == 0:
            return Outcome("not_cached", f"no key held for pages under {under}", attempts)
        return Outcome("purged", f"deleted {counter[0]} key{'' if counter[0] == 1 else 's'} under {under}", attempts)

    async def verify_prefix(self, prefix: str) -> Verification:
        """No key under the prefix may be left. Keys found now were written after the SCAN went past them
        (SCAN returns every key that exists for the whole scan): fresh or stale, we cannot tell."""
        try:
            patterns = self.prefix_patterns(prefix)
        except ValueError as exc:
            return Verification(None, str(exc))

        async def first_keys() -> list[str]:
            found: list[str] = []
            for pattern in patterns:
                async for key in self.client.scan_iter(match=pattern, count=500):
                    found.append(key.decode(errors="replace"))
                    if len(found) >= 3:
                        return found
            return found

        try:
            found, _ = await self._retrying(first_keys)
        except LayerUnavailable as exc:
            return Verification(None, str(exc))
        except Exception as exc:  # noqa: BLE001 - verify never raises
            return Verification(None, f"redis at {self.address}: {type(exc).__name__}")
        if not found:
            return Verification(True, f"no key under {prefix[:-1]} left")
        return Verification(None, f"keys under {prefix[:-1]} were written again since the purge "
                                  f"({', '.join(found)}{' …' if len(found) >= 3 else ''}): fresh or stale, cannot tell")

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        """Every key of the site's hosts, found with SCAN (never KEYS), deleted in batches."""
        counter = [0]
        try:
            for host in hosts:
                for pattern in self.host_patterns(host):
                    _, attempts = await self._retrying(lambda pattern=pattern: self._scan_delete(pattern, counter))
        except Exception as exc:  # noqa: BLE001 - becomes a failed Outcome
            return self._failed(exc, counter[0])
        if counter[0] == 0:
            return Outcome("not_cached", "no keys held for these hosts", 1)
        return Outcome("purged", f"deleted {counter[0]} keys for {', '.join(hosts)}", 1)

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        asked = list(dict.fromkeys(urls))
        refusals = {url: refused(reason) for url in asked if (reason := purge_refusal(url))}
        unique = [url for url in asked if url not in refusals]
        deleted = {url: 0 for url in unique}
        attempts = {url: 1 for url in unique}
        errors: dict[str, Exception] = {}
        exact: list[tuple[str, str]] = []
        patterns: list[tuple[str, str]] = []
        for url in unique:
            keys, globs = self.keys_for(url)
            exact += [(url, key) for key in keys]
            patterns += [(url, glob) for glob in globs]

        async def delete_chunk(chunk: Sequence[tuple[str, str]]) -> None:
            async def op() -> list[int]:
                pipe = self.client.pipeline(transaction=False)
                for _, key in chunk:
                    pipe.delete(key)
                return await pipe.execute()

            try:
                counts, made = await self._retrying(op)
            except Exception as exc:  # noqa: BLE001 - becomes a failed Outcome
                for url, _ in chunk:
                    errors.setdefault(url, exc)
                return
            for (url, _), count in zip(chunk, counts):
                deleted[url] += int(count)
                attempts[url] = max(attempts[url], made)

        async def delete_pattern(item: tuple[str, str]) -> None:
            url, pattern = item
            counter = [0]  # survives a retry: keys deleted before a dropped connection still count
            try:
                _, made = await self._retrying(lambda: self._scan_delete(pattern, counter))
            except Exception as exc:  # noqa: BLE001
                errors.setdefault(url, exc)
            else:
                attempts[url] = max(attempts[url], made)
            deleted[url] += counter[0]

        await map_bounded(batches(exact, self.config.max_batch), self.slots, delete_chunk)
        await map_bounded(patterns, self.slots, delete_pattern)

        results: dict[str, Outcome] = {}
        now = time.monotonic()
        for url in unique:
            n = deleted[url]
            if url in errors:
                results[url] = self._failed(errors[url], n)
                continue
            self._purged_at[url] = now
            if n:
                results[url] = Outcome("purged", f"deleted {n} key" + ("" if n == 1 else "s"), attempts[url])
            else:
                results[url] = Outcome("not_cached", "no key existed", attempts[url])
        return {url: refusals.get(url) or results[url] for url in asked}

    async def purge_tags(self, tags: Sequence[str]) -> dict[str, Outcome]:
        template = self.options.tag_set_template
        if not template:
            raise NotImplementedError("redis purges by tag only with options.tag_set_template")
        unique = list(dict.fromkeys(tags))

        async def purge_tag(tag: str) -> Outcome:
            set_key = self.options.key_prefix + template.format(tag=tag)
            counter = [0]

            async def op() -> None:
                # SSCAN, not SMEMBERS: a tag on a million pages must not block the server.
                batch: list[bytes] = []
                async for member in self.client.sscan_iter(set_key, count=500):
                    batch.append(member)
                    if len(batch) >= self.config.max_batch:
                        counter[0] += await self.client.delete(*batch)
                        batch = []
                if batch:
                    counter[0] += await self.client.delete(*batch)
                await self.client.delete(set_key)

            try:
                _, made = await self._retrying(op)
            except Exception as exc:  # noqa: BLE001
                return self._failed(exc, counter[0])
            n = counter[0]
            if n:
                return Outcome("purged", f"deleted {n} key" + ("" if n == 1 else "s"), made)
            return Outcome("not_cached", f"no key listed in {set_key}", made)

        return dict(zip(unique, await map_bounded(unique, self.slots, purge_tag)))

    # --- observe / verify ---------------------------------------------------------------------------------

    async def _present(self, url: str) -> tuple[list[str], str | None]:
        """Keys (or patterns) of ``url`` that exist now, and the body hash of the first existing string key."""
        from redis import exceptions as rexc

        keys, globs = self.keys_for(url)
        present: list[str] = []
        digest = None
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            for key, found in zip(keys, await pipe.execute()):
                if found:
                    present.append(key)
        for pattern in globs:
            async for _ in self.client.scan_iter(match=pattern, count=500):
                present.append(pattern)
                break
        for key in present:
            if key in keys:
                try:
                    if await self.client.strlen(key) <= _MAX_VALUE_BYTES:
                        value = await self.client.get(key)
                        if value is not None:
                            digest = body_hash(value)
                except rexc.ResponseError:  # not a string (hash, list...): no body to compare
                    pass
                break
        return present, digest

    async def observe(self, url: str) -> Observation:
        try:
            (present, digest), _ = await self._retrying(lambda: self._present(url))
        except (LayerUnavailable, UnsafePath) as exc:
            return Observation(reachable=False, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - observe never raises
            return Observation(reachable=False, error=f"redis at {self.address}: {type(exc).__name__}")
        return Observation(reachable=True, cache_status="HIT" if present else "MISS", body_hash=digest, tags=())

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        try:
            (present, digest), _ = await self._retrying(lambda: self._present(url))
        except (LayerUnavailable, UnsafePath) as exc:
            return Verification(None, str(exc))
        except Exception as exc:  # noqa: BLE001
            return Verification(None, f"redis at {self.address}: {type(exc).__name__}")
        if not present:
            return Verification(True, "keys gone")
        shown = ", ".join(present[:3]) + (" …" if len(present) > 3 else "")
        origin_ok = origin is not None and origin.reachable and origin.body_hash is not None
        if origin_ok and digest is not None and digest != origin.body_hash:  # type: ignore[union-attr]
            return Verification(False, f"still stale: {shown} differs from origin")
        if origin_ok and digest == origin.body_hash and url in self._purged_at:  # type: ignore[union-attr]
            # We saw the keys go; these were written since, and hold what the origin serves now.
            return Verification(True, f"re-filled since the purge: {shown} matches origin")
        return Verification(False, f"still there: {shown}")
