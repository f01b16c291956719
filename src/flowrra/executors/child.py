"""What runs inside a CPU child process: receive a call, run it, send back the outcome.

Messages in: ``(module, qualname, args, kwargs)``, or ``None`` to exit.
Messages out: ``(True, result)`` or ``(False, exception)``. An exception that cannot be
pickled is replaced by a :class:`RemoteTaskError` carrying its type name and message, so
the parent always learns what went wrong.
"""

from __future__ import annotations

import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flowrra.registry import resolve_task_function


class RemoteTaskError(Exception):
    """A child-process exception that could not be pickled, by type name and message."""

    def __init__(self, type_name: str, message: str, formatted: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.formatted = formatted

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteTaskError, (self.type_name, str(self), self.formatted))


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        formatted = "".join(traceback.format_exception(exc))
        return RemoteTaskError(type(exc).__name__, str(exc), formatted)
    return exc


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
        module, qualname, args, kwargs = message
        try:
            fn = functions.get((module, qualname))
            if fn is None:
                fn = functions[(module, qualname)] = resolve_task_function(module, qualname)
            outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except BaseException as exc:
            outcome = (False, _portable(exc))
        try:
            conn.send(outcome)
        except Exception as exc:  # the result itself could not be pickled
            conn.send((False, _portable(exc)))
