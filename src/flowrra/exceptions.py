"""Exceptions raised by flowrra.

Every error flowrra raises derives from :class:`FlowrraError`, so one ``except``
clause catches them all; some also derive from a built-in type so that code written
for the earlier 0.1.x API (``except ValueError``, ``except TimeoutError``) keeps working.
"""

from __future__ import annotations


class FlowrraError(Exception):
    """Base class of every flowrra error."""


class TaskNotFoundError(FlowrraError, ValueError):
    """A task name, or a task id, that flowrra does not know.

    ``TaskNotFoundError("send_email")`` reads "Task 'send_email' not registered". For an
    unknown task id, pass ``message`` to say so instead.
    """

    def __init__(self, task_name: str, message: str | None = None) -> None:
        self.task_name = task_name
        super().__init__(message or f"Task '{task_name}' not registered")


class TaskTimeoutError(FlowrraError, TimeoutError):
    """A wait, or a task run, took longer than its timeout.

    A subclass of the built-in :class:`TimeoutError` (which ``asyncio.TimeoutError`` is an
    alias of), so ``except TimeoutError`` catches it.
    """

    def __init__(self, task_id: str, timeout: float | None) -> None:
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(f"Task '{task_id}' did not complete within {timeout}s")


class ExecutorNotRunningError(FlowrraError):
    """The app (or an executor) was used before ``start()`` or after ``stop()``."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or "Flowrra is not running: call 'await app.start()' or use 'async with app:'"
        )


class BackendError(FlowrraError):
    """A broker or result backend is misconfigured, unreachable or failed an operation."""


class SerializationError(FlowrraError, TypeError):
    """A value that cannot cross a process boundary as JSON (task arguments or a result)."""


class WorkerLostError(FlowrraError):
    """The process running a task died (killed, crashed, ``os._exit``) before it finished.

    flowrra delivers such a task again; this is a *delivery*, not a retry. After
    ``max_deliveries`` deliveries the task is dead-lettered with this error.
    """


class TaskCancelledError(FlowrraError):
    """The task was cancelled with ``app.cancel(task_id)``."""


class ConfigurationError(FlowrraError, ValueError):
    """An invalid configuration value; the message names the field."""
