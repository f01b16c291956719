"""Plain functions run as CPU tasks by the unit tests.

They live at module level in a module of their own because a CPU task runs in a child
process that imports its function by module and qualified name. They are deliberately
not decorated: each test registers the ones it needs on its own app.

Functions that the tests must observe from outside report through files whose paths they
receive as arguments (a child process shares no memory with the test).
"""

from __future__ import annotations

import os
import threading
import time


def _write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees a partial file."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


def getpid() -> int:
    """Return the pid of the process running the call."""
    return os.getpid()


def busy_interval(seconds: float) -> list[float]:
    """Spin on the CPU for ``seconds``; return ``[start, end, pid]`` (wall-clock times)."""
    start = time.time()
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        total += 1
    end = time.time()
    return [start, end, float(os.getpid())]


def raise_value_error(message: str) -> None:
    """Fail with a ``ValueError`` raised in the child."""
    raise ValueError(message)


class UnpicklableError(Exception):
    """An exception that cannot be pickled (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(message: str) -> None:
    """Fail with an exception that cannot travel back to the parent by pickle."""
    raise UnpicklableError(message)


def return_lock() -> object:
    """Return a value that cannot be pickled."""
    return threading.Lock()


def return_set() -> object:
    """Return a value that pickles fine but has no JSON form."""
    return {1, 2, 3}


def slow_square(x: int, delay: float) -> int:
    """Sleep ``delay`` seconds, then return ``x * x``."""
    time.sleep(delay)
    return x * x


def write_pid_and_sleep(pid_path: str, seconds: float) -> int:
    """Write this process's pid to ``pid_path``, then sleep ``seconds``."""
    _write_atomically(pid_path, str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def sleep_unless_marked(pid_path: str, marker_path: str, seconds: float) -> dict[str, object]:
    """First run: leave a marker, publish the pid and sleep. Later runs: return at once."""
    if os.path.exists(marker_path):
        return {"run": "again", "pid": os.getpid()}
    _write_atomically(marker_path, "ran")
    _write_atomically(pid_path, str(os.getpid()))
    time.sleep(seconds)
    return {"run": "first", "pid": os.getpid()}


def exit_hard(counter_path: str) -> None:
    """Record one run in ``counter_path``, then kill this process without cleanup."""
    with open(counter_path, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os._exit(1)
