"""The result-backend protocol.

A backend stores one :class:`~flowrra.task.TaskResult` per task id and wakes waiters when a
task completes. The app records every state change through it (pending, running,
retrying, then success, failed or cancelled); a backend only stores and looks up.

Required: :meth:`store`, :meth:`get`, :meth:`wait_for`. The rest have working defaults a
backend may replace with faster ones. Every implementation passes
``tests/contract/test_backend_contract.py``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime

from flowrra.task import TaskResult, TaskStatus

#: Records read per call when a listing filters them (``list_by_task_name``'s default).
LISTING_CHUNK = 500


def latest_time(record: TaskResult) -> datetime:
    """When ``record`` last changed: finished, else started, else submitted (aware, UTC
    for naive times; the epoch when it has none)."""
    moment = record.finished_at or record.started_at or record.submitted_at
    if moment is None:
        return _EPOCH
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_EPOCH = datetime.fromtimestamp(0, UTC)


async def filtered_page(
    backend: BaseResultBackend,
    status: TaskStatus,
    keeps: Callable[[TaskResult], bool],
    limit: int | None,
    offset: int,
) -> list[TaskResult]:
    """Records in ``status`` that ``keeps`` passes, paged by ``offset``/``limit`` after
    filtering: :meth:`BaseResultBackend.list_by_status` is read in chunks of
    :data:`LISTING_CHUNK` until the page is full or the status runs out."""
    page: list[TaskResult] = []
    skip, read = offset, 0
    while limit is None or len(page) < limit:
        chunk = await backend.list_by_status(status, LISTING_CHUNK, read)
        for record in filter(keeps, chunk):
            if skip:
                skip -= 1
            elif limit is None or len(page) < limit:
                page.append(record)
        if len(chunk) < LISTING_CHUNK:
            break
        read += len(chunk)
    return page


class BaseResultBackend(ABC):
    """Where task records live.

    Contract:
    - ``store`` replaces the record of ``task_id``. Records of tasks that are not complete
      never expire; a backend may expire completed ones (TTL, size bound).
    - ``get`` returns the latest stored record, or ``None`` for an unknown or expired id.
    - ``wait_for`` returns the record once it is complete (success, failed, cancelled),
      without polling where the store allows; it raises
      :class:`~flowrra.exceptions.TaskTimeoutError` after ``timeout`` seconds and
      :class:`~flowrra.exceptions.TaskNotFoundError` for an id it has no record of.
    """

    @abstractmethod
    async def store(self, task_id: str, result: TaskResult) -> None:
        """Save ``result`` as the record of ``task_id`` and wake its waiters if complete."""

    @abstractmethod
    async def get(self, task_id: str) -> TaskResult | None:
        """The record of ``task_id``, or ``None``."""

    @abstractmethod
    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        """Wait until ``task_id`` is complete and return its record."""

    async def connect(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Check that the store can be reached, raising a clear error when it cannot (a
        wrong password, an unknown host). ``Flowrra.start`` calls it, so a misconfigured
        process fails at start rather than at its first task."""

    async def store_fenced(self, task_id: str, result: TaskResult, fence: int) -> bool:
        """Store ``result`` unless a newer claim of the task already wrote its record.

        ``fence`` is the claim token of the worker's delivery; tokens grow with every
        claim, so a worker that lost its lease (and whose task was claimed again) cannot
        overwrite the new owner's record. Returns False, storing nothing, in that case.
        Backends shared by several processes should implement it atomically; the default,
        for backends private to one process, stores and returns True.
        """
        await self.store(task_id, result)
        return True

    async def store_unless_finished(
        self, task_id: str, result: TaskResult, fence: int | None = None
    ) -> bool:
        """Store ``result`` unless the task's record is already finished (success, failed,
        cancelled) or, with ``fence``, was written by a newer claim; True if stored.
        Backends shared by several processes should do it atomically (and make a fenced
        write stick: the claim ``fence`` can no longer change it); the default, for
        backends private to one process, reads then writes."""
        current = await self.get(task_id)
        if current is not None and current.is_complete:
            return False
        await self.store(task_id, result)
        return True

    def post_fenced(
        self, task_id: str, result: TaskResult, fence: int
    ) -> asyncio.Future[int] | None:
        """Start :meth:`store_fenced` without waiting for it, or ``None`` if not supported.

        A backend returns a future only when it guarantees that every write this process
        starts afterwards (``store``, ``store_fenced``, ``post_fenced``) lands after this
        one, so a worker can run the task while its running record is on the way. The
        future holds 1 when the record was stored, 0 when a newer claim had written it
        (:meth:`store_fenced` answering False). The default returns ``None``: the caller
        then awaits :meth:`store_fenced`.
        """
        return None

    def post_new(self, task_id: str, result: TaskResult) -> asyncio.Future[int] | None:
        """Start writing the first record of a task being submitted, without waiting;
        ``None`` if not supported (the caller then awaits :meth:`store`).

        The write is skipped when the task already has a record: a worker that claimed
        the task before this write landed has written a newer one. So the write may land
        after the task was queued, and a submit waits for both at once. The future holds 1
        when the record was written, 0 when one existed. Ordered like :meth:`post_fenced`.
        """
        return None

    async def delete(self, task_id: str) -> bool:
        """Remove the record of ``task_id``; True if there was one."""
        raise NotImplementedError(f"{type(self).__name__} does not support delete()")

    async def clear(self) -> int:
        """Remove every record; returns how many were removed."""
        raise NotImplementedError(f"{type(self).__name__} does not support clear()")

    async def list_by_status(
        self, status: TaskStatus, limit: int | None = None, offset: int = 0
    ) -> list[TaskResult]:
        """Records in ``status``, most recent first, paged by ``offset``/``limit``."""
        raise NotImplementedError(f"{type(self).__name__} does not support list_by_status()")

    async def list_by_task_name(
        self, status: TaskStatus, task_name: str, limit: int | None = None, offset: int = 0
    ) -> list[TaskResult]:
        """Records in ``status`` of task ``task_name`` (exact), most recent first, paged by
        ``offset``/``limit`` after filtering.

        The default reads :meth:`list_by_status` in chunks of :data:`LISTING_CHUNK` until
        the page is full, so it raises ``NotImplementedError`` where that does; backends
        replace it with one that skips other tasks' records without decoding them.
        """
        return await filtered_page(
            self, status, lambda record: record.task_name == task_name, limit, offset
        )

    async def list_recent(self, limit: int | None = None, offset: int = 0) -> list[TaskResult]:
        """Records of every status, the most recently changed first, paged by
        ``offset``/``limit``.

        The default merges :meth:`list_by_status` pages by each record's latest time
        (finished, else started, else submitted), so it raises ``NotImplementedError``
        where that does; backends that index records by the time they were stored
        replace it with a merge of those indexes that reads only the page's records.
        """
        wanted = None if limit is None else offset + limit
        merged: list[TaskResult] = []
        for status in TaskStatus:
            merged += await self.list_by_status(status, wanted, 0)
        merged.sort(key=latest_time, reverse=True)
        return merged[offset : None if limit is None else offset + limit]

    async def count_by_status(self) -> dict[TaskStatus, int]:
        """How many records each status holds now (every status is a key).

        The default counts through :meth:`list_by_status`, so it raises
        ``NotImplementedError`` where that does; backends replace it with a count that
        does not read the records.
        """
        return {status: len(await self.list_by_status(status)) for status in TaskStatus}

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections; the backend is not used afterwards."""
