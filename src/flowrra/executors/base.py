"""The executor protocol: how one task call is run.

The worker owns the queue, retries, timeouts, cancellation and results; an executor only
runs a call. It is given ``concurrency`` slots: the worker never asks it to run more calls
at once than that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class BaseTaskExecutor(ABC):
    """Runs task calls for the worker. Subclass it to plug in a custom executor.

    Contract for :meth:`run`:
    - return the call's result, or raise the exception the call raised;
    - when the awaiting coroutine is cancelled (a timeout, ``app.cancel``, shutdown), stop
      the call before re-raising ``CancelledError``: flowrra's timeout and cancel semantics
      rest on this;
    - raise :class:`~flowrra.exceptions.WorkerLostError` when whatever ran the call died
      without an outcome; the task is then delivered again (not retried).

    :meth:`start` runs before the first call and :meth:`stop` after the last one.
    """

    def __init__(self, concurrency: int = 1) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.concurrency = concurrency

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (processes, threads, connections)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release resources. No call is running when this is called."""

    @abstractmethod
    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` and return its result."""
