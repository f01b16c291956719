"""What runs inside a CPU child process: receive a call, run it, send back the outcome.

Messages in: ``(module, qualname, args, kwargs)``, or ``None`` to exit.
Messages out: ``(True, result, None)`` or ``(False, exception, formatted traceback)``.
Tracebacks do not survive pickling, so the child formats its own and the parent attaches
it to the exception (:func:`child_traceback`). An exception that cannot be pickled is
replaced by a :class:`RemoteTaskError` carrying its type name and message, and a result
that cannot be pickled by a :class:`~flowrra.exceptions.SerializationError`, so the parent
always learns what went wrong.
"""

from __future__ import annotations

import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flowrra.exceptions import SerializationError
from flowrra.registry import resolve_task_function

_TRACEBACK_ATTRIBUTE = "__flowrra_child_traceback__"


class RemoteTaskError(Exception):
    """A child-process exception that could not be pickled, by type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteTaskError, (self.type_name, str(self)))


def attach_child_traceback(error: BaseException, formatted: str | None) -> BaseException:
    """Remember the child's formatted traceback on ``error`` (read by :func:`child_traceback`)."""
    if formatted:
        setattr(error, _TRACEBACK_ATTRIBUTE, formatted)
    return error


def child_traceback(error: BaseException) -> str | None:
    """The traceback a child process formatted for ``error``, if it came from one."""
    value = getattr(error, _TRACEBACK_ATTRIBUTE, None)
    return value if isinstance(value, str) else None


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RemoteTaskError(type(exc).__name__, str(exc))
    return exc


def _run(message: tuple[str, str, tuple[Any, ...], dict[str, Any]], cache: dict[Any, Any]) -> Any:
    module, qualname, args, kwargs = message
    fn: Callable[..., Any] | None = cache.get((module, qualname))
    if fn is None:
        fn = cache[(module, qualname)] = resolve_task_function(module, qualname)
    return fn(*args, **kwargs)


def child_main(conn: Connection) -> None:
    """Serve calls from the parent until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    functions: dict[tuple[str, str], Callable[..., Any]] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            outcome: tuple[bool, Any, str | None] = (True, _run(message, functions), None)
        except BaseException as exc:
            outcome = (False, _portable(exc), "".join(traceback.format_exception(exc)))
        try:
            conn.send(outcome)
        except Exception as exc:  # the result itself could not be pickled
            error = SerializationError(
                f"the result of {message[1]} cannot be sent from its child process: {exc}"
            )
            conn.send((False, error, None))
