"""The supervisor behind ``flowrra worker --processes N``: N worker processes, kept running.

Contract:

- It starts ``processes`` children, each running ``command`` (a ``flowrra worker ...
  --processes 1`` command line) in its own process group, so a Ctrl-C in a terminal
  reaches the children only through the supervisor, once.
- A child that exits while the supervisor is not stopping is restarted after a back-off
  that doubles with each quick failure (``initial`` s, then 2x, up to ``cap`` s) and
  starts over once a child has run for ``stable_after`` s. A crash loop therefore costs
  at most one start every ``cap`` seconds.
- A child that exits with code 2 (usage or configuration error) is not restarted: the
  supervisor stops the other children and exits 2, since every restart would fail alike.
- The first SIGTERM/SIGINT is forwarded to every child, which shuts down gracefully on
  its own; the supervisor waits for all of them. A second signal is forwarded too (each
  child then exits at once). The exit code is 0 when every child exited with 0, else 1.
- Children get the read end of a pipe whose write end only the supervisor holds: if the
  supervisor dies (even by SIGKILL), the pipe closes and each child stops gracefully
  instead of running on unsupervised.

One log line is written per child start, exit and restart (logger ``flowrra.supervisor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger("flowrra.supervisor")

USAGE_ERROR = 2  # the exit code of a child that can never start (bad app, bad options)


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``initial`` s after the first quick failure, doubling up to ``cap``.

    A child that ran at least ``stable_after`` s before it exited counts as healthy: its
    restart waits ``initial`` s again.
    """

    initial: float = 0.5
    cap: float = 10.0
    stable_after: float = 10.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before restarting after ``failures`` quick failures in a row (>= 1)."""
        exponent = max(0, failures - 1)
        if exponent >= 64:  # far beyond the cap: avoid a huge float
            return self.cap
        return min(self.cap, self.initial * 2.0**exponent)


class _Child:
    """One supervised slot: its number, its current process, and its quick failures."""

    __slots__ = ("failures", "number", "process")

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: asyncio.subprocess.Process | None = None
        self.failures = 0


class Supervisor:
    """Keeps ``processes`` copies of ``command`` running until SIGTERM/SIGINT.

    ``command`` is the argument vector of one child (``[sys.executable, "-m", "flowrra",
    "worker", ...]``); the supervisor appends ``--parent-fd FD`` to it.
    """

    def __init__(
        self, command: Sequence[str], processes: int, backoff: Backoff | None = None
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self._command = list(command)
        self._processes = processes
        self._backoff = backoff or Backoff()
        self._children = [_Child(number) for number in range(1, processes + 1)]
        self._stop = asyncio.Event()
        self._signal: int | None = None
        self._gave_up = False
        self._parent_fd = -1

    async def run(self) -> int:
        """Supervise until stopped; returns the exit code (0, 1, or 2 on a usage error)."""
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._on_signal, number)
        read_fd, write_fd = os.pipe()  # both ends are not inherited unless passed
        self._parent_fd = read_fd
        logger.info(
            "supervisor started: %d worker processes (pid %d)", self._processes, os.getpid()
        )
        try:
            codes = await asyncio.gather(*(self._keep(child) for child in self._children))
        finally:
            os.close(read_fd)
            os.close(write_fd)
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(number)
        if self._gave_up:
            logger.error("supervisor stopped: a worker process cannot start (see above)")
            return USAGE_ERROR
        code = 0 if all(code == 0 for code in codes) else 1
        logger.info("supervisor stopped (exit code %d)", code)
        return code

    def _on_signal(self, number: int) -> None:
        """Forward the signal to every child; the first one also stops restarts."""
        if self._stop.is_set():
            logger.warning("second %s: worker processes exit at once", signal.Signals(number).name)
        else:
            logger.info("%s: stopping worker processes", signal.Signals(number).name)
            self._signal = number
            self._stop.set()
        self._forward(number)

    def _forward(self, number: int) -> None:
        for child in self._children:
            process = child.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited just now
                    process.send_signal(number)

    def _give_up(self) -> None:
        """Stop every child because one can never start."""
        if not self._stop.is_set():
            self._gave_up = True
            self._signal = signal.SIGTERM
            self._stop.set()
            self._forward(signal.SIGTERM)

    async def _spawn(self, child: _Child) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self._command,
            "--parent-fd",
            str(self._parent_fd),
            pass_fds=(self._parent_fd,),
            process_group=0,
        )
        child.process = process
        logger.info("worker process %d started (pid %d)", child.number, process.pid)
        if self._signal is not None:  # a signal arrived while the child was being started
            process.send_signal(self._signal)
        return process

    async def _keep(self, child: _Child) -> int:
        """Run ``child`` until the supervisor stops; return its last exit code."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            process = await self._spawn(child)
            code = await process.wait()
            child.process = None
            if self._stop.is_set():
                logger.info(
                    "worker process %d (pid %d) exited (code %d)", child.number, process.pid, code
                )
                return code
            if code == USAGE_ERROR:
                logger.error(
                    "worker process %d (pid %d) exited with code 2 (usage or configuration "
                    "error): not restarting",
                    child.number,
                    process.pid,
                )
                self._give_up()
                return code
            child.failures = (
                1 if loop.time() - started >= self._backoff.stable_after else (child.failures + 1)
            )
            delay = self._backoff.delay(child.failures)
            logger.warning(
                "worker process %d (pid %d) exited unexpectedly (code %d); restarting in %.1f s",
                child.number,
                process.pid,
                code,
                delay,
            )
            if await self._stopped_within(delay):
                return 0

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the supervisor is stopped first; True if it was."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True


def supervise(command: Sequence[str], processes: int, backoff: Backoff | None = None) -> int:
    """Run a :class:`Supervisor` in a new event loop; returns its exit code."""

    async def main() -> int:
        return await Supervisor(command, processes, backoff).run()

    return asyncio.run(main())
