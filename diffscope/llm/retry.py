"""Retrying transient provider failures, and turning HTTP failures into `ProviderError`s.

Rate limits (429), timeouts (408), conflicts (409), server errors (5xx, Anthropic's 529
"overloaded") and lost connections are retried with tenacity. A `Retry-After` (seconds or an HTTP
date) or `retry-after-ms` header sets the wait when present; otherwise the wait grows
exponentially with jitter. Every wait is capped. Authentication failures and bad requests are
never retried. The SDKs' own retries are switched off (`max_retries=0`) so the layers do not
multiply; the `sleep` of a `RetryPolicy` is injectable so tests run in milliseconds.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from diffscope.llm.base import ProviderError, TransientProviderError, is_retryable

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    `max_attempts` counts the first try. Waits follow `Retry-After` when the server sends it,
    else `initial_wait * 2**(n-1)` plus up to `jitter` seconds, never more than `max_wait`.
    """

    max_attempts: int = 6
    initial_wait: float = 1.0
    max_wait: float = 60.0
    jitter: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_wait)
        backoff = self.initial_wait * 2 ** min(attempt - 1, 30)
        return min(backoff + random.uniform(0, self.jitter), self.max_wait)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait, from `retry-after-ms` or `Retry-After`, else None.

    `Retry-After` may be a number of seconds or an HTTP date; a date in the past gives 0.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is transient: 408, 409, 429 or any 5xx (including 529)."""
    return status in RETRYABLE_STATUS or status >= 500


def error_from_status(
    provider: str,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    *,
    key_env: str | None = None,
) -> ProviderError:
    """The `ProviderError` for an HTTP error status, with a plain message."""
    detail = detail.strip() or "no detail"
    if is_retryable_status(status):
        what = {
            429: "rate limited",
            529: "overloaded",
            408: "request timed out",
            409: "conflict",
        }.get(status, "server error")
        return TransientProviderError(
            f"{provider}: {what} (HTTP {status}): {detail}",
            provider=provider,
            status_code=status,
            retry_after=parse_retry_after(headers),
        )
    if status == 401:
        hint = f"; check {key_env}" if key_env else "; check the API key"
        message = f"{provider}: authentication failed (HTTP 401){hint}: {detail}"
    elif status == 403:
        hint = f" (is {key_env} allowed to use this model?)" if key_env else ""
        message = f"{provider}: permission denied (HTTP 403){hint}: {detail}"
    elif status == 404:
        message = f"{provider}: not found (HTTP 404), check the model name and base URL: {detail}"
    else:
        message = f"{provider}: request rejected (HTTP {status}): {detail}"
    return ProviderError(message, provider=provider, status_code=status)


def _describe_wait(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("attempt %d failed (%s); retrying in %.1fs", state.attempt_number, error, wait)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None) -> T:
    """Await `call()`, retrying on `TransientProviderError` as the policy says.

    When the attempts run out the last failure is raised as a plain, non-retryable
    `ProviderError` saying how many attempts were made.
    """
    policy = policy or RetryPolicy()

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, TransientProviderError) else None
        return policy.wait_for(state.attempt_number, retry_after)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(policy.max_attempts, 1)),
        wait=wait,
        retry=retry_if_exception(is_retryable),
        sleep=policy.sleep,
        before_sleep=_describe_wait,
        reraise=True,
    )

    async def attempt() -> T:
        return await call()

    try:
        return await retrying(attempt)
    except TransientProviderError as err:
        attempts = max(policy.max_attempts, 1)
        raise ProviderError(
            f"{err.message} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})",
            provider=err.provider,
            status_code=err.status_code,
        ) from err
