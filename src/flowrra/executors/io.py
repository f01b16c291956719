"""The IO executor: async tasks on the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowrra.executors.base import BaseTaskExecutor


class IOExecutor(BaseTaskExecutor):
    """Runs ``async def`` tasks on the app's event loop, ``max_workers`` at once.

    Cancellation cancels the task's coroutine.
    """

    def __init__(self, max_workers: int = 4) -> None:
        super().__init__(max_workers)

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Await ``fn(*args, **kwargs)``."""
        return await fn(*args, **kwargs)
