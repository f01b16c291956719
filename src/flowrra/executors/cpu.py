"""The CPU executor: plain functions in child processes, one call per child at a time.

Each child is a long-lived process fed through a pipe. The parent waits for a reply with
the event loop's reader callback on the pipe (no threads, no polling). Owning the children
one by one is what makes per-task control possible: a timeout or ``app.cancel`` kills just
that task's child, and a child that dies (SIGKILL, segfault, ``os._exit``) fails just the
call it was running with :class:`~flowrra.exceptions.WorkerLostError`, while every other
child keeps running. A dead child is replaced on the next call. (``ProcessPoolExecutor``
can do neither: it cannot stop a running call, and one dead child breaks the whole pool.)
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from flowrra.exceptions import ExecutorNotRunningError, WorkerLostError
from flowrra.executors.base import BaseTaskExecutor
from flowrra.executors.child import attach_child_traceback, child_main


class _Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        parent_end, child_end = multiprocessing.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=child_main, args=(child_end,), daemon=True, name="flowrra-cpu"
        )
        self.process.start()
        child_end.close()
        self.conn: Connection = parent_end

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.is_alive()

    async def call(
        self, module: str, qualname: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, Any, str | None]:
        """Send one call and wait for ``(ok, result or exception, child traceback)``."""
        loop = asyncio.get_running_loop()
        self.conn.send((module, qualname, args, kwargs))
        readable: asyncio.Future[None] = loop.create_future()
        fd = self.conn.fileno()
        loop.add_reader(fd, _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            outcome: tuple[bool, Any, str | None] = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerLostError(self._death_note()) from None
        return outcome

    def _death_note(self) -> str:
        self.process.join(timeout=1.0)
        return f"CPU child process {self.pid} died (exit code {self.process.exitcode})"

    async def kill(self) -> None:
        """Stop the child now and reap it."""
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        await asyncio.to_thread(self.process.join, 5.0)

    async def shutdown(self, grace: float) -> None:
        """Ask the child to exit; kill it if it has not within ``grace`` seconds."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        await asyncio.to_thread(self.process.join, grace)
        await self.kill()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CPUExecutor(BaseTaskExecutor):
    """Runs ``cpu_bound`` tasks in ``max_workers`` child processes, in parallel.

    ``start_method``: how children are created (``"spawn"``, ``"forkserver"``, ``"fork"``);
    the default, ``"spawn"``, works everywhere and never copies the parent's threads or
    event loop. Children start on the first CPU call (or at ``start`` with ``prestart``).
    Arguments and results travel by pickle between this process and its own children
    only; nothing pickled ever leaves the host.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        start_method: str = "spawn",
        prestart: bool = False,
    ) -> None:
        super().__init__(max_workers or os.cpu_count() or 1)
        self._context = multiprocessing.get_context(start_method)
        self._prestart = prestart
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._running = False

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def children(self) -> list[int]:
        """PIDs of the live child processes."""
        return [c.pid for c in (*self._idle, *self._busy) if c.pid is not None and c.is_alive()]

    async def start(self) -> None:
        """Accept calls; with ``prestart``, start every child now."""
        self._running = True
        if self._prestart:
            while len(self._idle) < self.concurrency:
                self._idle.append(_Child(self._context))

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``fn`` in a child; cancellation kills that child."""
        if not self._running:
            raise ExecutorNotRunningError("the CPU executor is not running")
        child = self._checkout()
        try:
            ok, payload, formatted = await child.call(fn.__module__, fn.__qualname__, args, kwargs)
        except BaseException:
            self._busy.discard(child)
            await child.kill()
            raise
        self._busy.discard(child)
        if self.is_running:  # stop() may have begun while the call ran
            self._idle.append(child)
        else:
            await child.shutdown(grace=1.0)
        if ok:
            return payload
        raise attach_child_traceback(payload, formatted)

    def _checkout(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.is_alive():
                self._busy.add(child)
                return child
        child = _Child(self._context)
        self._busy.add(child)
        return child

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every child (no call is running when the worker calls this)."""
        self._running = False
        children = [*self._idle, *self._busy]
        self._idle.clear()
        await asyncio.gather(*(child.shutdown(grace) for child in children))
