"""State changes of tasks: build the record, store it, publish it.

Every transition of the state machine in :mod:`flowrra.task` goes through
:class:`TaskRecorder`, so no backend or executor can forget the event or the log line.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from datetime import datetime

from flowrra.backends.base import BaseResultBackend
from flowrra.backends.memory import InMemoryBackend
from flowrra.events import EventBus
from flowrra.executors.child import child_traceback
from flowrra.task import (
    PENDING,
    RETRYING,
    Task,
    TaskResult,
    TaskStatus,
    attempt_entry,
    live_record,
    utcnow,
)

logger = logging.getLogger("flowrra.tasks")


def describe_error(error: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` (the remote type name for child-process errors)."""
    type_name = getattr(error, "type_name", None) or type(error).__name__
    message = str(error)
    return f"{type_name}: {message}" if message else type_name


def format_traceback(error: BaseException) -> str:
    """The formatted traceback of ``error`` (the child's, for child-process errors)."""
    return child_traceback(error) or "".join(traceback.format_exception(error))


def add_attempt(task: Task, started_at: datetime | None, error: BaseException | str) -> None:
    """Append the attempt that just failed to ``task.attempts`` before it is retried.

    Call it after ``task.current_retry`` was raised for the next attempt; the entry names
    ``task.worker``. The history is a tuple, replaced rather than changed, so records
    already stored keep the history they had.
    """
    message = describe_error(error) if isinstance(error, BaseException) else error
    entry = attempt_entry(task.current_retry, started_at, utcnow(), message, task.worker)
    task.attempts = (*task.attempts, entry)


async def store_and_publish(backend: BaseResultBackend, bus: EventBus, record: TaskResult) -> None:
    """Store ``record`` outside a worker (a management action) and publish it as
    :class:`TaskRecorder` does: a backend that publishes its records itself (Redis) is not
    doubled by an in-process event."""
    await backend.store(record.task_id, record)
    if bus.subscribers and getattr(backend, "publish_updates", False) is not True:
        await bus.emit({"type": "task.update", "task": record.to_dict})


def _log_posted(done: asyncio.Future[int], record: TaskResult) -> None:
    """Log the outcome of a write started by :meth:`TaskRecorder.post_live` if it failed."""
    if done.cancelled():
        return
    error = done.exception()
    if error is not None:
        logger.warning(
            "task %s[%s]: recording it as %s failed: %s",
            record.task_name,
            record.task_id,
            record.status,
            error,
        )
    elif not done.result():
        logger.warning(
            "task %s[%s]: a newer claim owns it; dropping this worker's %s record",
            record.task_name,
            record.task_id,
            record.status,
        )


def _needs_io(*_: object) -> bool:
    """The fast path does not apply: the caller takes the awaiting one."""
    return False


class TaskRecorder:
    """Stores each state change of a task and publishes it as a ``task.update`` event.

    With the in-process backend, records of unfinished tasks are kept as a reference to
    the queued task and built only when somebody reads them.
    """

    def __init__(self, backend: BaseResultBackend, bus: EventBus) -> None:
        self.backend = backend
        self.bus = bus
        self._memory: InMemoryBackend | None = None
        if isinstance(backend, InMemoryBackend) and type(backend).store is InMemoryBackend.store:
            self._memory = backend
        # a backend that publishes every stored record (Redis) delivers the events to every
        # process, this one included, so emitting here too would duplicate them
        self.publishes_updates = getattr(backend, "publish_updates", False) is True
        self.live_nowait: Callable[[Task, TaskStatus, datetime | None, int], bool]
        """Record an unfinished state at once if that needs no I/O, returning True;
        False otherwise (then await :meth:`live`). It is the in-process backend's own
        method while nobody subscribes to events, so the hot path costs one call."""
        self.store_nowait: Callable[[str, TaskResult], bool]
        """Store a record (``task_id``, ``record``) at once if that needs no I/O, returning
        True; False otherwise (then await :meth:`record`)."""
        self._choose_fast_paths()
        bus.watch(self._choose_fast_paths)

    def _choose_fast_paths(self) -> None:
        memory = self._memory
        if memory is not None and not self.bus.subscribers:
            self.live_nowait = memory.mark_live
            self.store_nowait = memory.store_now
        else:
            self.live_nowait = _needs_io
            self.store_nowait = _needs_io

    @property
    def memory(self) -> InMemoryBackend | None:
        """The in-process backend when its fast paths apply (not a subclass that stores
        elsewhere), else None."""
        return self._memory

    async def record(
        self, record: TaskResult, *, fence: int | None = None, keep_finished: bool = False
    ) -> bool:
        """Store ``record`` and publish it; False if ``fence`` (a claim token) is stale.

        With a ``fence``, the write is refused when a newer claim of the task already
        wrote its record: the caller lost its lease and must drop its outcome. With
        ``keep_finished``, it is also refused (False) when the stored record is already
        finished.
        """
        if keep_finished:
            if not await self.backend.store_unless_finished(record.task_id, record, fence):
                return False
        elif self._memory is not None:
            self._memory.store_now(record.task_id, record)
        elif fence is not None:
            if not await self.backend.store_fenced(record.task_id, record, fence):
                logger.warning(
                    "task %s[%s]: a newer claim owns it; dropping this worker's %s record",
                    record.task_name,
                    record.task_id,
                    record.status,
                )
                return False
        else:
            await self.backend.store(record.task_id, record)
        if self.bus.subscribers and not self.publishes_updates:
            await self.bus.emit({"type": "task.update", "task": record.to_dict})
        return True

    async def live(
        self,
        task: Task,
        status: TaskStatus,
        started_at: datetime | None,
        deliveries: int,
        *,
        fence: int | None = None,
    ) -> bool:
        """Record an unfinished state: pending (queued or handed back) or running.

        Returns False when ``fence`` is stale (see :meth:`record`).
        """
        if self._memory is not None:
            self._memory.mark_live(task, status, started_at, deliveries)
            if self.bus.subscribers:
                record = live_record(task, status, started_at, deliveries)
                await self.bus.emit({"type": "task.update", "task": record.to_dict})
            return True
        return await self.record(live_record(task, status, started_at, deliveries), fence=fence)

    def post_live(
        self,
        task: Task,
        status: TaskStatus,
        started_at: datetime | None,
        deliveries: int,
        fence: int,
    ) -> bool:
        """Start recording an unfinished state without waiting for the write; True if it
        was started, False when this backend or a local event subscriber needs the
        awaiting :meth:`live` instead.

        Every write started later lands after this one (see
        :meth:`~flowrra.backends.base.BaseResultBackend.post_fenced`), and the fenced
        final write gets the same verdict, so the caller may run the task meanwhile. A
        failed or refused write is logged.
        """
        record = live_record(task, status, started_at, deliveries)
        future = self.post_record(record, fence)
        if future is None:
            return False
        future.add_done_callback(lambda done: _log_posted(done, record))
        return True

    def post_record(self, record: TaskResult, fence: int) -> asyncio.Future[int] | None:
        """Start a fenced write of ``record`` without waiting (the future holds 1 when it
        was stored, 0 when a newer claim owns the task), or ``None`` when the backend or a
        local event subscriber needs the awaiting :meth:`record` instead."""
        if self.bus.subscribers and not self.publishes_updates:
            return None
        return self.backend.post_fenced(record.task_id, record, fence)

    def post_submitted(self, task: Task) -> asyncio.Future[int] | None:
        """Start recording a task being submitted as pending, without waiting (see
        :meth:`~flowrra.backends.base.BaseResultBackend.post_new`); ``None`` when the
        backend or a local event subscriber needs the awaiting :meth:`live` instead."""
        if self.bus.subscribers and not self.publishes_updates:
            return None
        return self.backend.post_new(task.id, live_record(task, PENDING, None, 0))

    async def pending(self, task: Task, deliveries: int = 0, *, fence: int | None = None) -> bool:
        """The task waits in the queue (new, or handed back after its worker died)."""
        return await self.live(task, PENDING, None, deliveries, fence=fence)

    async def ended(
        self,
        task: Task,
        status: TaskStatus,
        error: BaseException | str,
        started_at: datetime | None,
        deliveries: int,
        *,
        fence: int | None = None,
        keep_finished: bool = False,
    ) -> bool:
        """The task failed, is waiting for a retry, or was cancelled.

        Returns False when ``fence`` is stale, or with ``keep_finished`` when the task's
        record is already finished (see :meth:`record`).
        """
        if isinstance(error, BaseException):
            message, trace = describe_error(error), format_traceback(error)
        else:
            message, trace = error, None
        final = status != RETRYING
        stored = await self.record(
            TaskResult(
                task.id,
                status,
                task.name,
                error=message,
                submitted_at=task.submitted_at,
                started_at=started_at,
                finished_at=utcnow() if final else None,
                retries=task.current_retry,
                args=task.args,
                kwargs=task.kwargs,
                deliveries=deliveries,
                traceback=trace,
                worker=task.worker,
                attempts=task.attempts,
            ),
            fence=fence,
            keep_finished=keep_finished,
        )
        if stored and logger.isEnabledFor(logging.INFO):
            logger.info(
                "task %s[%s] %s (attempt %d): %s",
                task.name,
                task.id,
                status,
                task.current_retry + 1,
                message,
            )
        return stored
