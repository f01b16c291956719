"""Callers waiting for tasks to complete: the futures a backend resolves on completion."""

from __future__ import annotations

import asyncio

from flowrra.exceptions import TaskTimeoutError
from flowrra.task import TaskResult


class ResultWaiters(dict[str, list[asyncio.Future[TaskResult]]]):
    """Futures by task id, resolved by the backend when the task's final record arrives.

    A dict (task id -> futures), so "is anybody waiting" costs a backend's hot path nothing.
    Register with :meth:`add` *before* reading the record, so a completion that lands in
    between is not missed; then :meth:`until` waits (and always unregisters).
    """

    def ids(self) -> list[str]:
        """The task ids somebody waits for."""
        return list(self)

    def add(self, task_id: str) -> asyncio.Future[TaskResult]:
        """A future for the final record of ``task_id``."""
        future: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self.setdefault(task_id, []).append(future)
        return future

    def discard(self, task_id: str, future: asyncio.Future[TaskResult]) -> None:
        """Unregister ``future`` (a no-op if it already was)."""
        futures = self.get(task_id)
        if futures is None:
            return
        if future in futures:
            futures.remove(future)
        if not futures:
            del self[task_id]

    async def until(
        self, task_id: str, future: asyncio.Future[TaskResult], timeout: float | None
    ) -> TaskResult:
        """Wait for ``future``; :class:`TaskTimeoutError` after ``timeout`` seconds."""
        if timeout is None:  # no timeout context: it costs more than the wait itself
            try:
                return await future
            finally:
                self.discard(task_id, future)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TaskTimeoutError(task_id, timeout) from None
        finally:
            self.discard(task_id, future)

    def resolve(self, task_id: str, record: TaskResult) -> None:
        """Wake every waiter of ``task_id`` with its final ``record``."""
        for future in self.pop(task_id, ()):
            if not future.done():
                future.set_result(record)

    def fail(self, task_id: str, error: BaseException) -> None:
        """Wake every waiter of ``task_id`` with ``error``."""
        for future in self.pop(task_id, ()):
            if not future.done():
                future.set_exception(error)
