"""The queued unit (:class:`Task`), its record (:class:`TaskResult`) and its states.

A task moves through one state machine, named once here::

    pending ──claim──▶ running ──▶ success
       ▲                  │  └────▶ failed      (no retries left, or not retryable)
       │                  ├───────▶ retrying ──(back-off elapsed)──▶ pending
       └──(redelivery)────┘
    pending / retrying / running ──cancel──▶ cancelled
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class TaskStatus(enum.StrEnum):
    """Where a task is in its life. Compares equal to its string value."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


# Module-level aliases of the members, for hot paths: looking a member up on an enum class
# (``TaskStatus.PENDING``) costs more than ten times a global name lookup on CPython 3.11.
PENDING = TaskStatus.PENDING
RUNNING = TaskStatus.RUNNING
SUCCESS = TaskStatus.SUCCESS
FAILED = TaskStatus.FAILED
RETRYING = TaskStatus.RETRYING
CANCELLED = TaskStatus.CANCELLED

def is_terminal(status: TaskStatus) -> bool:
    """True for success, failed and cancelled (identity checks: enum hashing is slow)."""
    return status is SUCCESS or status is FAILED or status is CANCELLED


_UTC_ISO: dict[datetime, str] = {}
_UTC_ISO_SIZE = 4096


def iso_text(value: datetime) -> str:
    """``value.isoformat()``, remembered for the most recent UTC times: a task's
    submission and start times appear in each of its records and in its message."""
    if value.tzinfo is not UTC or type(value) is not datetime:
        return value.isoformat()  # equal instants in other zones (or types) print differently
    text = _UTC_ISO.get(value)
    if text is None:
        if len(_UTC_ISO) >= _UTC_ISO_SIZE:
            _UTC_ISO.clear()
        text = _UTC_ISO[value] = value.isoformat()
    return text


def _iso(value: datetime | None) -> str | None:
    return iso_text(value) if value is not None else None


def _parse_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass(slots=True)
class TaskResult:
    """The record of one task: its state, result or error, timing and arguments.

    ``error`` reads ``"<ExceptionType>: <message>"``. The final record keeps
    ``submitted_at``, ``args`` and ``kwargs``. ``retries`` counts retries after the first
    attempt; ``deliveries`` counts how many times a worker claimed the current attempt (a
    redelivery after a worker died is a delivery, not a retry). ``traceback`` holds the
    formatted traceback of the last error. ``worker`` is the id of the worker that ran (or
    runs) the latest attempt (``None`` before any ran). ``attempts`` lists the attempts
    that ended in a retry, oldest first, each ``{"attempt", "started_at", "finished_at",
    "error", "worker"}`` (ISO times): empty for a task that ran once; the latest attempt is
    the one the other fields describe. It is a tuple (a list in :attr:`to_dict`): records
    share the empty one, so a task that runs once allocates nothing for it.
    """

    task_id: str
    status: TaskStatus
    task_name: str | None = None
    result: Any = None
    error: str | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retries: int = 0
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    deliveries: int = 0
    traceback: str | None = None
    worker: str | None = None
    attempts: tuple[dict[str, Any], ...] = ()

    @property
    def is_complete(self) -> bool:
        """True once the task reached a final state (success, failed or cancelled)."""
        return is_terminal(TaskStatus(self.status))

    @property
    def is_success(self) -> bool:
        """True when the task finished without error."""
        return self.status == TaskStatus.SUCCESS

    @property
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ISO datetimes, the status as its string, args as a list.

        A property (not a method), as in the 0.1.x API.
        """
        return {
            "task_id": self.task_id,
            "status": str(self.status),
            "task_name": self.task_name,
            "result": self.result,
            "error": self.error,
            "submitted_at": _iso(self.submitted_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "retries": self.retries,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "deliveries": self.deliveries,
            "traceback": self.traceback,
            "worker": self.worker,
            "attempts": list(self.attempts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """Rebuild a record from :attr:`to_dict` output. Unknown keys are ignored."""
        return cls(
            task_id=str(data["task_id"]),
            status=TaskStatus(data["status"]),
            task_name=data.get("task_name"),
            result=data.get("result"),
            error=data.get("error"),
            submitted_at=_parse_datetime(data.get("submitted_at")),
            started_at=_parse_datetime(data.get("started_at")),
            finished_at=_parse_datetime(data.get("finished_at")),
            retries=int(data.get("retries", 0)),
            args=tuple(data.get("args", ())),
            kwargs=dict(data.get("kwargs") or {}),
            deliveries=int(data.get("deliveries", 0)),
            traceback=data.get("traceback"),
            worker=data.get("worker"),
            attempts=tuple(data.get("attempts") or ()),
        )


@dataclass(slots=True, eq=False)
class Task:
    """One queued call: what the broker stores and a worker claims.

    Ordering: a task with a **higher** ``priority`` sorts first (``a < b`` means a runs
    before b). Brokers add FIFO order among equal priorities themselves.

    ``eta`` is the UNIX time before which the task must not start (``None``: now).
    ``executor`` names the executor that runs it (``None``: ``"cpu"`` when ``cpu_bound``,
    else ``"io"``). ``attempts`` is the history of attempts that ended in a retry (see
    :class:`TaskResult`); it travels in the message, which leaves it out while it is empty.
    ``worker`` is the id of the worker that claimed the task last, set by that worker; it
    is not part of the message.
    """

    id: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    max_retries: int = 3
    retry_delay: float = 1.0
    current_retry: int = 0
    priority: int = 0
    cpu_bound: bool = False
    queue: str = "default"
    executor: str | None = None
    timeout: float | None = None
    eta: float | None = None
    submitted_at: datetime | None = None
    attempts: tuple[dict[str, Any], ...] = ()
    worker: str | None = None

    def __lt__(self, other: Task) -> bool:
        return self.priority > other.priority

    @property
    def executor_name(self) -> str:
        """The executor this task runs on."""
        if self.executor is not None:
            return self.executor
        return "cpu" if self.cpu_bound else "io"

    def to_message(self) -> dict[str, Any]:
        """A JSON-ready dict of the queued call (the wire form used by remote brokers):
        every field but ``worker``, and ``attempts`` only when there are some."""
        message = {
            "id": self.id,
            "name": self.name,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "current_retry": self.current_retry,
            "priority": self.priority,
            "cpu_bound": self.cpu_bound,
            "queue": self.queue,
            "executor": self.executor,
            "timeout": self.timeout,
            "eta": self.eta,
            "submitted_at": _iso(self.submitted_at),
        }
        if self.attempts:
            message["attempts"] = list(self.attempts)
        return message

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Task:
        """Rebuild a task from :meth:`to_message` output.

        Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a malformed message.
        """
        args = data["args"]
        kwargs = data["kwargs"]
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError("message 'args' must be a list and 'kwargs' an object")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            args=tuple(args),
            kwargs=kwargs,
            max_retries=int(data.get("max_retries", 3)),
            retry_delay=float(data.get("retry_delay", 1.0)),
            current_retry=int(data.get("current_retry", 0)),
            priority=int(data.get("priority", 0)),
            cpu_bound=bool(data.get("cpu_bound", False)),
            queue=str(data.get("queue", "default")),
            executor=data.get("executor"),
            timeout=data.get("timeout"),
            eta=data.get("eta"),
            submitted_at=_parse_datetime(data.get("submitted_at")),
            attempts=_check_attempts(data.get("attempts")),
        )


def _check_attempts(value: Any) -> tuple[dict[str, Any], ...]:
    """A message's attempt history (empty when absent); TypeError if not a list of objects."""
    if not value:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError("message 'attempts' must be a list of objects")
    return tuple(value)


def attempt_entry(
    attempt: int,
    started_at: datetime | None,
    finished_at: datetime,
    error: str | None,
    worker: str | None,
) -> dict[str, Any]:
    """One entry of an attempt history (JSON-ready: ISO times)."""
    return {
        "attempt": attempt,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "error": error,
        "worker": worker,
    }


def live_record(
    task: Task, status: TaskStatus, started_at: datetime | None, deliveries: int
) -> TaskResult:
    """The record of a task that is not finished (pending, running) from its message."""
    return TaskResult(
        task.id,
        status,
        task.name,
        submitted_at=task.submitted_at,
        started_at=started_at,
        retries=task.current_retry,
        args=task.args,
        kwargs=task.kwargs,
        deliveries=deliveries,
        worker=task.worker,
        attempts=task.attempts,
    )


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)
