"""Retrying a request to a cache's API: exponential backoff with full jitter, honouring the server's ``Retry-After``
(within a cap), every attempt taking a token from the layer's rate limiter first."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from aiolimiter import AsyncLimiter

from agent.layers.base import LayerUnavailable

if TYPE_CHECKING:  # imported where a request is sent: checking a config never loads httpx (issue #13)
    import httpx


class RetryableStatus(Exception):
    """A 429/5xx answer that is worth another attempt, carrying the server's Retry-After if any."""

    def __init__(self, status_code: int, retry_after: float | None, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def raise_for_retryable(response: httpx.Response) -> None:
    """Turn 429 and 5xx into ``RetryableStatus`` so ``with_retries`` tries again (honouring Retry-After)."""
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableStatus(
            response.status_code,
            parse_retry_after(response.headers.get("Retry-After")),
            f"HTTP {response.status_code}",
        )


async def with_retries(
    attempt: Callable[[], Awaitable[httpx.Response]],
    *,
    retries: int,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
    max_retry_after: float = 60.0,
    limiter: AsyncLimiter | None = None,
) -> tuple[httpx.Response, int]:
    """Run ``attempt`` until it returns a non-retryable response; returns (response, attempts made).

    Retries on connection errors, timeouts, 429 and 5xx, with exponential backoff and full jitter, waiting
    at least the server's ``Retry-After`` — unless it asks for more than ``max_retry_after`` seconds, when we
    stop and say so rather than hold the whole run. Each attempt first takes a token from ``limiter``.
    Raises ``LayerUnavailable`` when every attempt failed.
    """
    import httpx

    last_error = ""
    for number in range(1, retries + 2):
        try:
            if limiter is not None:
                await limiter.acquire()
            response = await attempt()
            raise_for_retryable(response)
            return response, number
        except RetryableStatus as exc:
            last_error = str(exc)
            delay = exc.retry_after
            if delay is not None and delay > max_retry_after:
                raise LayerUnavailable(f"{exc} asking us to wait {delay:.0f} s (more than {max_retry_after:.0f} s)")
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            last_error = describe_transport_error(exc)
            delay = None
        if number > retries:
            break
        backoff = backoff_delay(number, base_delay, max_delay)
        await asyncio.sleep(max(backoff, delay or 0.0))
    raise LayerUnavailable(f"{last_error} after {retries + 1} attempts")


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter after the ``attempt``-th failure (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def describe_transport_error(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
