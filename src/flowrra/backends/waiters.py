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


_UNWATCHED = object()


class RecentSubmissions:
    """Task ids this process recorded as pending while it was subscribed to completions,
    each with the completion (the raw final record) if one arrived before anybody waited.

    For such an id the subscription has seen every completion since before the task could
    run, so :meth:`take` tells a waiter the outcome without reading Redis: the raw record
    if it finished, or that it has not finished yet. Whoever subscribes must
    :meth:`clear` on every (re)subscription, since messages sent while the connection was
    down are lost; an id that is no longer held is simply read from Redis as before.

    Memory is bounded: ids are kept in two generations of at most ``capacity`` each; when
    the young one fills it becomes the old one and the previous old one is dropped, so the
    most recent ``capacity`` to ``2 * capacity`` ids are held, with completions of at most
    ``keep_bytes`` each.
    """

    __slots__ = ("_capacity", "_keep_bytes", "_old", "_young")

    def __init__(self, capacity: int = 8192, keep_bytes: int = 65536) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._keep_bytes = keep_bytes
        self._young: dict[str, bytes | None] = {}
        self._old: dict[str, bytes | None] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def watch(self, task_id: str) -> None:
        """Hold ``task_id`` (recorded as pending just now, while subscribed)."""
        young = self._young
        young[task_id] = None
        self._old.pop(task_id, None)  # held again (resubmitted): an older completion is stale
        if len(young) >= self._capacity:
            self._old, self._young = young, {}

    def arrived(self, task_id: str, raw: bytes) -> None:
        """Keep the completion ``raw`` of a held id (any other id is ignored). A completion
        larger than ``keep_bytes`` is not kept: the id is let go, and read when waited for."""
        for generation in (self._young, self._old):
            if task_id in generation:
                if len(raw) > self._keep_bytes:
                    del generation[task_id]
                else:
                    generation[task_id] = raw
                return

    def take(self, task_id: str) -> tuple[bool, bytes | None]:
        """Stop holding ``task_id``: ``(True, raw)`` if it finished (``raw`` its final
        record), ``(True, None)`` if it has not finished, ``(False, None)`` if the id is
        not held (then only Redis can tell)."""
        raw = self._young.pop(task_id, _UNWATCHED)
        if raw is _UNWATCHED:
            raw = self._old.pop(task_id, _UNWATCHED)
            if raw is _UNWATCHED:
                return False, None
        assert raw is None or type(raw) is bytes
        return True, raw

    def clear(self) -> None:
        """Forget every id (after a (re)subscription: completions may have been missed)."""
        self._young = {}
        self._old = {}
