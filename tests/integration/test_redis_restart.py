"""A Redis restart in the middle of a run: nothing is lost and the worker resumes."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.redis_support import PERSISTENCE_OPTIONS, redis_url, run_with_interruption

pytestmark = [pytest.mark.service, pytest.mark.slow]

TASKS = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PersistentRedis:
    """A redis-server of this test only, with append-only persistence in a folder."""

    def __init__(self, folder: Path) -> None:
        redis_url()  # skip (or fail in CI) without the main Redis
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed")
        self.command = [
            server,
            "--port",
            str(_free_port()),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            *PERSISTENCE_OPTIONS,
        ]
        self.port = int(self.command[2])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes its append-only file, then exits
            self.process.wait(10)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_redis_restart_loses_nothing(persistent_redis: PersistentRedis) -> None:
    async def restart() -> None:
        await asyncio.to_thread(persistent_redis.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(persistent_redis.start)

    url = f"redis://127.0.0.1:{persistent_redis.port}/0"
    ran_before, _ = await run_with_interruption(url, "restart", restart, TASKS)
    assert ran_before < TASKS, "every task ran before the restart: the test proved nothing"
