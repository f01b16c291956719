"""Helpers for the ``flowrra worker`` tests: start, watch and always stop real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from worker_app import make_app

from flowrra import Flowrra
from flowrra.brokers.base import BrokerCounts
from flowrra.brokers.redis import RedisBroker

HERE = Path(__file__).parent


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m flowrra <args>`` from this folder (so its apps import), to completion."""
    return subprocess.run(
        [sys.executable, "-m", "flowrra", *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
_CHILD_STARTED = re.compile(r"worker process (\d+) started \(pid (\d+)\)")


@dataclass
class Deployment:
    """One test's Redis namespace, output directory and the processes it started."""

    url: str
    output: Path
    prefix: str = field(default_factory=lambda: f"flowrra-worker-test-{uuid.uuid4().hex[:12]}")
    lease: float = 2.0
    prefetch: int = 16
    max_deliveries: int = 3
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    _handles: list[IO[str]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The environment ``worker_app`` reads its configuration from."""
        return {
            **os.environ,
            "FLOWRRA_TEST_REDIS_URL": self.url,
            "FLOWRRA_TEST_PREFIX": self.prefix,
            "FLOWRRA_TEST_OUTPUT": str(self.output),
            "FLOWRRA_TEST_LEASE": str(self.lease),
            "FLOWRRA_TEST_PREFETCH": str(self.prefetch),
            "FLOWRRA_TEST_MAX_DELIVERIES": str(self.max_deliveries),
            "PYTHONUNBUFFERED": "1",
        }

    def app(self) -> Flowrra:
        """A producer app on the same broker and backend as the workers."""
        return make_app(
            self.url,
            self.prefix,
            lease=self.lease,
            prefetch=self.prefetch,
            max_deliveries=self.max_deliveries,
        )

    def start(self, *options: str, app: str = "worker_app:app") -> subprocess.Popen[str]:
        """Start ``flowrra worker APP OPTIONS``; its output goes to a log file of its own."""
        log = self.output / f"process-{len(self.logs)}.log"
        handle = log.open("w")
        command = [sys.executable, "-m", "flowrra", "worker", app, *options]
        process = subprocess.Popen(
            command, cwd=HERE, env=self.env(), stdout=handle, stderr=subprocess.STDOUT, text=True
        )
        self.processes.append(process)
        self.logs.append(log)
        self._handles.append(handle)
        return process

    def log_of(self, process: subprocess.Popen[str]) -> str:
        """Everything ``process`` wrote so far."""
        return self.logs[self.processes.index(process)].read_text()

    def all_logs(self) -> str:
        """The output of every process started, in start order."""
        return "\n".join(log.read_text() for log in self.logs)

    def kill_all(self) -> None:
        """SIGKILL every process still running (children of supervisors included)."""
        for pid in child_pids(self.all_logs()):
            _kill(pid)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for handle in self._handles:
            handle.close()


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def child_pids(log: str) -> list[int]:
    """The pids of the worker processes a supervisor logged as started, oldest first."""
    return [int(match.group(2)) for match in _CHILD_STARTED.finditer(log)]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def deployment(url: str, output: Path, **settings: float) -> Iterator[Deployment]:
    """A :class:`Deployment` whose processes are killed on the way out, whatever happened."""
    deployed = Deployment(url, output, **settings)  # type: ignore[arg-type]
    try:
        yield deployed
    finally:
        deployed.kill_all()


@asynccontextmanager
async def producer(deployed: Deployment) -> AsyncIterator[Flowrra]:
    """A started producer-only app of ``deployed``; its keys are deleted on the way out."""
    app = deployed.app()
    await app.start(worker=False)
    try:
        yield app
    finally:
        await app.stop()
        broker = app.broker
        assert isinstance(broker, RedisBroker)
        await broker.purge()
        await app.backend.clear()
        await broker.close()
        await app.backend.close()


async def counts(app: Flowrra) -> BrokerCounts:
    """The broker's current counts."""
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    return await broker.counts()


async def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(interval)
    return condition()


def wait_exit(process: subprocess.Popen[str], timeout: float) -> int | None:
    """``process``'s exit code, or None if it still runs after ``timeout`` s."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
