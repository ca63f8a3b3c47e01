"""Amazon CloudFront: purging is ``CreateInvalidation`` on one distribution; verifying is its status.

* **Paths.** A URL becomes its path (with query string) — the distribution is the host. ``purge_all`` sends
  ``/*``; ``purge_prefixes`` sends ``/dir/*`` for ``https://host/dir/*``. With ``collapse_wildcards_over: N``,
  when more than N planned pages share a directory (other than ``/``), the *plan* purges that directory as one
  prefix ``/dir/*`` (``collapsed_prefixes``): a wildcard counts as one path for billing (1,000 free paths a
  month) and for the 3,000-paths-in-progress limit, but it clears every page under the directory, so it is
  shown and approved as a prefix purge. ``purge_urls`` itself always sends each URL's own path.
* **Batches.** Up to ``max_batch`` paths per invalidation (1,000 unless ``max_batch`` is set, at most 3,000).
* **Idempotency.** Each batch's ``CallerReference`` is a hash of its sorted paths and the layer's ``run_nonce``
  (random per layer instance; a caller may set it, e.g. to the run's id). A retry after a lost answer sends the
  same reference, which CloudFront answers with the invalidation it already made instead of a second one; the
  same batch purged again by this process (same nonce) is not sent again at all.
* **Retries.** ``TooManyInvalidationsInProgress`` waits and tries again (``busy_retries`` times, exponential
  backoff from ``busy_backoff_seconds``); throttling, 5xx and network errors use the layer's ``retries``.
  botocore's own retries are off so every attempt is counted. boto3 is synchronous: calls run in a thread.
* **Verification.** An invalidation whose status is ``Completed`` means every edge dropped the objects, so the
  next request goes inwards (to layers already purged and verified): that is the evidence ("invalidation I2AB
  Completed"). Still ``InProgress`` after ``verify_wait_seconds`` → unverified, with the id. The layer is checked
  by CloudFront's own record, not by fetching pages (``verifies_against_origin = False``).
* **Credentials.** ``credentials.aws_access_key_id`` / ``aws_secret_access_key`` (optional
  ``aws_session_token``), else boto3's default chain (environment, profile, instance role). ``endpoint``
  (optional) replaces the AWS endpoint, for tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from pydantic import Field

from agent.config import LayerConfig
from agent.layers.base import CacheLayer, Capability, Observation, Outcome, Verification, refused
from agent.layers.batching import batches, map_bounded
from agent.layers.retry import backoff_delay
from agent.layers.wire import host_and_path, prefix_parts, purge_refusal
from agent.urls import UnsafePath

T = TypeVar("T")
DEFAULT_PATHS_PER_INVALIDATION = 1_000
MAX_PATHS_IN_PROGRESS = 3_000
TRANSIENT_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
                   "InternalError", "InternalFailure", "RequestTimeout"}
AUTH_CODES = {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
              "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId"}


def path_for(url: str) -> str:
    """``https://shop.example/caf\u00e9?x=1`` -> ``/caf%C3%A9?x=1``: what CloudFront keys the object on in a
    distribution, normalised like every target (``agent.urls``). Raises ``UnsafePath`` when there is none."""
    return host_and_path(url)[1]


def covers(pattern: str, path: str) -> bool:
    """Does an invalidation path cover ``path``? CloudFront wildcards are a trailing ``*``."""
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return pattern == path


def caller_reference(nonce: str, paths: Sequence[str]) -> str:
    digest = hashlib.sha256((nonce + "\n" + "\n".join(sorted(paths))).encode()).hexdigest()
    return f"cachebot-{digest[:40]}"


@dataclass
class PlannedPath:
    path: str  # what is sent
    note: str = ""  # why it differs from the page's own path


class _Failed(Exception):
    def __init__(self, detail: str, attempts: int):
        super().__init__(detail)
        self.detail = detail
        self.attempts = attempts


class CloudFrontLayer(CacheLayer):
    kind = "cloudfront"
    capabilities = frozenset({Capability.PURGE_URL, Capability.PURGE_PREFIX, Capability.PURGE_ALL, Capability.VERIFY})
    verifies_against_origin = False  # CloudFront's own record (the invalidation's status) is the evidence

    # Shared by the instances of one process: execute and verify open their own layer instances.
    # (distribution, invalidation path) -> invalidation id; (distribution, CallerReference) -> (id, status).
    _sent_paths: ClassVar[OrderedDict[tuple[str, str], str]] = OrderedDict()
    _by_reference: ClassVar[dict[tuple[str, str], tuple[str, str]]] = {}
    _MEMORY = 100_000

    class Options(CacheLayer.Options):
        distribution_id: str = Field(min_length=1, pattern=r"^[A-Z0-9]+$")
        region: str = "us-east-1"
        collapse_wildcards_over: int | None = Field(
            default=None, ge=1, description="plan more than N pages of one directory as the prefix purge /dir/*"
        )
        busy_retries: int = Field(default=5, ge=0, le=20, description="tries after TooManyInvalidationsInProgress")
        busy_backoff_seconds: float = Field(default=5.0, ge=0, le=300)
        verify_wait_seconds: float = Field(default=5.0, ge=0, le=600)
        verify_lookback: int = Field(default=20, ge=0, le=100, description="recent invalidations searched on verify")

    def __init__(self, config: LayerConfig):
        super().__init__(config)
        self.distribution_id = self.options.distribution_id
        #: part of every CallerReference: the same batch with the same nonce is one invalidation
        self.run_nonce = uuid.uuid4().hex
        self._client: Any = None
        self._status_cache: dict[str, tuple[str, list[str], str]] = {}  # id -> (status, paths, create time)
        self._status_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @classmethod
    def check_config(cls, index: int, config: LayerConfig) -> None:
        if config.endpoint is not None:
            parts = urlsplit(config.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"layers[{index}].endpoint: optional; when set, an http(s):// address (tests)")
        creds = set(config.credentials)
        pair = {"aws_access_key_id", "aws_secret_access_key"}
        unknown = creds - pair - {"aws_session_token"}
        if unknown:
            raise ValueError(f"layers[{index}].credentials.{sorted(unknown)[0]}: unknown; use "
                             "aws_access_key_id, aws_secret_access_key (and aws_session_token)")
        if creds & pair and not pair <= creds:
            missing = sorted(pair - creds)[0]
            raise ValueError(f"layers[{index}].credentials.{missing}: required with the other AWS key "
                             "(or give neither, for boto3's default chain)")

    # --- plumbing ---------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # heavy (~0.5 s): loaded only when a CloudFront layer is used, like every backend's client
            from botocore.config import Config

            creds = {k: v.get_secret_value() for k, v in self.config.credentials.items()}
            session = boto3.session.Session(**creds, region_name=self.options.region)
            self._client = session.client(
                "cloudfront",
                endpoint_url=self.config.endpoint,
                config=Config(
                    retries={"total_max_attempts": 1, "mode": "standard"},  # we retry, and count, ourselves
                    connect_timeout=self.config.timeout_seconds,
                    read_timeout=self.config.timeout_seconds,
                ),
            )
        return self._client

    def _scrub(self, text: str) -> str:
        for secret in self.config.credentials.values():
            if secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "***")
        return text

    async def _call(self, fn: Callable[[], T], what: str) -> tuple[T, int]:
        """``fn`` in a thread; transient errors retried ``config.retries`` times, ``TooManyInvalidationsInProgress``
        ``busy_retries`` times. Raises ``_Failed`` with a message safe to show and the attempts made."""
        from botocore.exceptions import (  # botocore loads with boto3, on first use (see client)
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        attempts = transient = busy = 0
        waited = 0.0
        while True:
            attempts += 1
            try:
                return await asyncio.to_thread(fn), attempts
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
                message = self._scrub(str(error.get("Message", "")))[:200]
                if code == "TooManyInvalidationsInProgress":
                    busy += 1
                    if busy > self.options.busy_retries:
                        raise _Failed(
                            f"CloudFront still had too many invalidations in progress on {self.distribution_id} "
                            f"(at most {MAX_PATHS_IN_PROGRESS:,} paths, 15 wildcard paths) after waiting "
                            f"{waited:.1f} s over {busy} tries; try again later", attempts) from None
                    delay = min(60.0, self.options.busy_backoff_seconds * 2 ** (busy - 1))
                    delay = random.uniform(delay / 2, delay)
                    waited += delay
                    await asyncio.sleep(delay)
                    continue
                if code in AUTH_CODES or status in (401, 403):
                    raise _Failed(f"CloudFront refused our credentials for {what} ({code or status})", attempts) from None
                if code in TRANSIENT_CODES or status == 429 or status >= 500:
                    last = f"{code or 'HTTP'} {status}".strip()
                else:
                    raise _Failed(f"CloudFront refused {what}: {code}" + (f": {message}" if message else ""),
                                  attempts) from None
            except NoCredentialsError:
                raise _Failed("no AWS credentials: set credentials.aws_access_key_id and aws_secret_access_key, "
                              "or configure boto3's default chain", attempts) from None
            except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as exc:
                last = "connection failed" if not isinstance(exc, ConnectTimeoutError) else "timed out"
                if isinstance(exc, ConnectionClosedError):
                    last = "connection closed before an answer"
            except ReadTimeoutError:
                last = "timed out"
            except BotoCoreError as exc:
                raise _Failed(f"CloudFront call {what} failed: {type(exc).__name__}", attempts) from None
            transient += 1
            if transient > self.config.retries:
                raise _Failed(f"could not reach CloudFront for {what}: {last} after {attempts} attempts", attempts)
            await asyncio.sleep(backoff_delay(transient))

    def items_per_request(self, operation: str) -> int:
        return self.paths_per_invalidation

    @property
    def paths_per_invalidation(self) -> int:
        if "max_batch" in self.config.model_fields_set:
            return min(self.config.max_batch, MAX_PATHS_IN_PROGRESS)
        return DEFAULT_PATHS_PER_INVALIDATION

    # --- planning -----------------------------------------------------------------------------------------

    def plan_paths(self, urls: Sequence[str]) -> dict[str, PlannedPath]:
        """What each URL is sent as by ``purge_urls``: its own path, never a wider wildcard."""
        return {url: PlannedPath(path_for(url)) for url in dict.fromkeys(urls) if purge_refusal(url) is None}

    def collapsed_prefixes(self, urls: Sequence[str]) -> dict[str, tuple[str, str]]:
        """With ``collapse_wildcards_over: N``: the pages of each directory (other than ``/``, which would be a
        purge of everything) holding more than N of them -> (``https://host/dir/*``, why)."""
        limit = self.options.collapse_wildcards_over
        if limit is None:
            return {}
        by_dir: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for url in dict.fromkeys(urls):
            parts = urlsplit(url)
            directory = parts.path.rsplit("/", 1)[0] + "/"
            by_dir[(parts.scheme, parts.netloc, directory)].append(url)
        collapsed: dict[str, tuple[str, str]] = {}
        for (scheme, netloc, directory), members in by_dir.items():
            distinct = len({path_for(u) for u in members})
            if directory != "/" and distinct > limit:
                why = (f"{self.name} sends one wildcard {directory}* instead of {distinct} paths "
                       f"(collapse_wildcards_over: {limit}), which clears every page under {directory}")
                collapsed |= {url: (f"{scheme}://{netloc}{directory}*", why) for url in members}
        return collapsed

    # --- purging ------------------------------------------------------------------------------------------

    async def _invalidate(self, paths: list[str]) -> tuple[str, str, int]:
        """One invalidation for ``paths``: (id, status, attempts). Raises ``_Failed``."""
        reference = caller_reference(self.run_id or self.run_nonce, paths)
        known = self._by_reference.get((self.distribution_id, reference))
        if known is not None:
            return known[0], known[1], 0
        batch = {"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": reference}
        answer, attempts = await self._call(
            lambda: self.client.create_invalidation(DistributionId=self.distribution_id, InvalidationBatch=batch),
            f"an invalidation on {self.distribution_id}",
        )
        invalidation = answer["Invalidation"]
        found = (invalidation["Id"], invalidation.get("Status", "InProgress"))
        self._by_reference[(self.distribution_id, reference)] = found
        for path in paths:
            key = (self.distribution_id, path)
            self._sent_paths[key] = found[0]
            self._sent_paths.move_to_end(key)
        while len(self._sent_paths) > self._MEMORY:
            self._sent_paths.popitem(last=False)
        return found[0], found[1], attempts

    async def purge_urls(self, urls: Sequence[str]) -> dict[str, Outcome]:
        """One invalidation path per page. A URL with ``*`` is refused, never passed on: CloudFront would read
        it as a wildcard (``/*`` is the whole distribution)."""
        unique = list(dict.fromkeys(urls))
        refusals = {url: refused(reason) for url in unique if (reason := purge_refusal(url))}
        planned = self.plan_paths([url for url in unique if url not in refusals])
        to_send = list(dict.fromkeys(p.path for p in planned.values()))
        sent: dict[str, tuple[str, str, int, int] | _Failed] = {}  # path -> (id, status, attempts, batch size)

        async def send(chunk: Sequence[str]) -> None:
            try:
                inv_id, status, attempts = await self._invalidate(list(chunk))
            except _Failed as exc:
                sent.update({path: exc for path in chunk})
                return
            except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
                failure = _Failed(f"cloudfront purge failed unexpectedly: {type(exc).__name__}", 1)
                sent.update({path: failure for path in chunk})
                return
            sent.update({path: (inv_id, status, attempts, len(chunk)) for path in chunk})

        await map_bounded(batches(to_send, self.paths_per_invalidation), self.slots, send)
        results: dict[str, Outcome] = {}
        for url, plan in planned.items():
            answer = sent[plan.path]
            if isinstance(answer, _Failed):
                results[url] = Outcome("failed", answer.detail + (f" ({plan.note})" if plan.note else ""), answer.attempts)
                continue
            inv_id, status, attempts, size = answer
            detail = f"invalidation {inv_id} {status} ({size} path{'' if size == 1 else 's'})"
            if attempts == 0:
                detail += ", already created by this run"
            if plan.note:
                detail += f"; {plan.note}"
            results[url] = Outcome("purged", detail, max(1, attempts))
        return {url: refusals.get(url) or results[url] for url in unique}

    async def purge_prefixes(self, prefixes: Sequence[str]) -> dict[str, Outcome]:
        """``https://host/dir/*`` -> the invalidation path ``/dir/*`` (CloudFront's trailing wildcard); the
        distribution is the host. All of them in invalidations of up to ``paths_per_invalidation`` paths."""
        unique = list(dict.fromkeys(prefixes))
        results: dict[str, Outcome] = {}
        paths: dict[str, list[str]] = defaultdict(list)  # invalidation path -> the prefixes it stands for
        for prefix in unique:
            problem = self.prefix_problem(prefix)
            if problem:
                results[prefix] = Outcome("failed", problem, attempts=0)
            else:
                paths[prefix_parts(prefix)[1] + "*"].append(prefix)

        async def send(chunk: Sequence[str]) -> None:
            try:
                inv_id, status, attempts = await self._invalidate(list(chunk))
            except _Failed as exc:
                outcome = Outcome("failed", exc.detail, exc.attempts)
            except Exception as exc:  # noqa: BLE001 - a purge reports, never raises
                outcome = Outcome("failed", f"cloudfront purge failed unexpectedly: {type(exc).__name__}", 1)
            else:
                outcome = Outcome("purged", f"invalidation {inv_id} {status} ({len(chunk)} wildcard "
                                            f"path{'' if len(chunk) == 1 else 's'})", max(1, attempts))
            for path in chunk:
                for prefix in paths[path]:
                    results[prefix] = Outcome(outcome.status, f"{outcome.detail}: {path}", outcome.attempts)

        await map_bounded(batches(list(paths), self.paths_per_invalidation), self.slots, send)
        return {prefix: results[prefix] for prefix in unique}

    async def verify_prefix(self, prefix: str) -> Verification:
        """The invalidation of ``/dir/*`` is CloudFront's own record for everything under it."""
        return await self.verify(prefix, None)

    async def purge_all(self, hosts: Sequence[str]) -> Outcome:
        try:
            inv_id, status, attempts = await self._invalidate(["/*"])
        except _Failed as exc:
            return Outcome("failed", exc.detail, exc.attempts)
        return Outcome("purged", f"invalidation {inv_id} {status} for /* (everything in distribution "
                                 f"{self.distribution_id}; a wildcard counts as 1 path)", max(1, attempts))

    # --- observe / verify ---------------------------------------------------------------------------------

    async def observe(self, url: str) -> Observation:
        return Observation(reachable=False, error="CloudFront has no API to look into its caches; "
                                                  "a purge is verified by its invalidation's status")

    async def _status(self, inv_id: str) -> tuple[str, list[str], str]:
        """(status, paths, create time) of an invalidation; Completed answers are kept (they are final)."""
        async with self._status_locks[inv_id]:
            cached = self._status_cache.get(inv_id)
            if cached is not None and cached[0].lower() == "completed":
                return cached
            answer, _ = await self._call(
                lambda: self.client.get_invalidation(DistributionId=self.distribution_id, Id=inv_id),
                f"invalidation {inv_id}",
            )
            invalidation = answer["Invalidation"]
            found = (str(invalidation.get("Status", "")),
                     list(invalidation.get("InvalidationBatch", {}).get("Paths", {}).get("Items") or []),
                     str(invalidation.get("CreateTime", "")))
            self._status_cache[inv_id] = found
            return found

    def _recorded(self, path: str) -> str | None:
        best: str | None = None
        for (distribution, sent), inv_id in reversed(self._sent_paths.items()):
            if distribution == self.distribution_id and covers(sent, path):
                best = inv_id
                break
        return best

    async def _look_up(self, path: str) -> str | None:
        """The newest of the distribution's recent invalidations that covers ``path`` (after a restart)."""
        if not self.options.verify_lookback:
            return None
        answer, _ = await self._call(
            lambda: self.client.list_invalidations(DistributionId=self.distribution_id,
                                                   MaxItems=str(self.options.verify_lookback)),
            f"the invalidations of {self.distribution_id}",
        )
        items = answer.get("InvalidationList", {}).get("Items") or []
        found: list[tuple[str, str]] = []
        for item in items[: self.options.verify_lookback]:
            _, paths, created = await self._status(item["Id"])
            if any(covers(p, path) for p in paths):
                found.append((created, item["Id"]))
        return max(found)[1] if found else None

    async def verify(self, url: str, origin: Observation | None) -> Verification:
        try:
            path = path_for(url)
        except UnsafePath as exc:
            return Verification(None, f"never invalidated: {exc}")
        try:
            inv_id = self._recorded(path) or await self._look_up(path)
            if inv_id is None:
                return Verification(None, f"no invalidation covering {path} found on {self.distribution_id}")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.options.verify_wait_seconds
            while True:
                status, _, _ = await self._status(inv_id)
                if status.lower() == "completed":
                    return Verification(True, f"invalidation {inv_id} Completed")
                if loop.time() >= deadline:
                    return Verification(None, f"invalidation {inv_id} still {status or 'pending'} after "
                                              f"{self.options.verify_wait_seconds:g} s")
                await asyncio.sleep(min(1.0, max(0.05, deadline - loop.time())))
        except _Failed as exc:
            return Verification(None, exc.detail)
