"""Retry policy: which failures are retried, and how long to wait before each retry.

The delay before retry ``n`` (1-based) is ``retry_delay * 2 ** (n - 1)``: 2, 4, 8, 16, 32 s
for ``retry_delay=2``. An optional cap bounds it; optional jitter spreads retries of many
tasks that failed together ("equal jitter": a uniform draw between half the delay and the
whole delay), so they do not hammer a recovering service at the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowrra.exceptions import TaskCancelledError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task's failures are retried.

    ``retry_on``: retry only exceptions of these types (``None``: any ``Exception``).
    ``dont_retry_on``: never retry these, even when ``retry_on`` matches.
    ``backoff_max``: upper bound of one delay in seconds (``None``: no bound).
    ``jitter``: randomise each delay within ``[delay / 2, delay]``.
    """

    retry_on: tuple[type[BaseException], ...] | None = None
    dont_retry_on: tuple[type[BaseException], ...] = ()
    backoff_max: float | None = None
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.backoff_max is not None and self.backoff_max < 0:
            raise ValueError("retry_backoff_max must be >= 0")
        for kind in (*(self.retry_on or ()), *self.dont_retry_on):
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"retry filters take exception types, got {kind!r}")

    def is_retryable(self, error: BaseException) -> bool:
        """True when ``error`` may be retried under the exception filters.

        Cancellation is never retried.
        """
        if isinstance(error, TaskCancelledError) or not isinstance(error, Exception):
            return False
        if isinstance(error, self.dont_retry_on):
            return False
        return self.retry_on is None or isinstance(error, self.retry_on)

    def delay(self, retry_number: int, retry_delay: float) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        delay = retry_delay * 2.0 ** (retry_number - 1)
        if self.backoff_max is not None:
            delay = min(delay, self.backoff_max)
        if self.jitter and delay > 0:
            delay = random.uniform(delay / 2, delay)
        return delay


DEFAULT_RETRY_POLICY = RetryPolicy()
