"""A real deployment for the browser tests: Redis, one ``flowrra worker`` process, the
standalone ``flowrra ui`` server, a producer app, and headless Chromium driven by
Playwright. Every process is killed and every key deleted on the way out."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest
from playwright.async_api import Dialog, Page, async_playwright

from _services import require_chromium
from browser.dashboard_app import make_app
from flowrra import Flowrra
from flowrra.brokers.redis import RedisBroker
from integration.redis_support import redis_url, unique_prefix

HERE = Path(__file__).parent
#: Where screenshots go: ``FLOWRRA_SCREENSHOTS`` (``docs/screenshots`` refreshes the
#: README's pictures), else the test's temporary directory.
SCREENSHOTS_ENV = "FLOWRRA_SCREENSHOTS"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Deployment:
    """The processes of one test, their logs, and a producer app on the same Redis keys."""

    output: Path
    env: dict[str, str]
    base_url: str
    producer: Flowrra
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    handles: list[IO[str]] = field(default_factory=list)

    def start(self, *command: str) -> None:
        """Run ``python -m flowrra COMMAND`` in the tests' folder, output to a log file."""
        log = self.output / f"{command[0]}-{len(self.logs)}.log"
        handle = log.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "flowrra", *command],
            cwd=HERE,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        self.logs.append(log)
        self.handles.append(handle)

    def output_of_processes(self) -> str:
        """Everything the processes wrote, for failure messages."""
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in self.logs)

    async def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Wait until the dashboard answers ``/api/health`` with a healthy app."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    answer = await client.get(f"{self.base_url}/api/health", timeout=2.0)
                    if answer.status_code == 200 and answer.json()["checks"]["app"]["healthy"]:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        pytest.fail(f"the dashboard did not come up:\n{self.output_of_processes()}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for handle in self.handles:
            handle.close()


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    """A worker process and the standalone dashboard on a fresh Redis key prefix."""
    url, prefix = redis_url(), unique_prefix("browser")
    schedules = tmp_path / "schedules.db"
    port = _free_port()
    env = {
        **os.environ,
        "FLOWRRA_TEST_REDIS_URL": url,
        "FLOWRRA_TEST_PREFIX": prefix,
        "FLOWRRA_TEST_SCHEDULE_DB": str(schedules),
        "FLOWRRA_TEST_OUTPUT": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    producer = make_app(url, prefix, str(schedules), tmp_path)
    deployed = Deployment(tmp_path, env, f"http://127.0.0.1:{port}", producer)
    try:
        deployed.start("worker", "dashboard_app:app", "--concurrency", "4")
        deployed.start("ui", "dashboard_app:app", "--port", str(port))
        await deployed.wait_until_serving()
        await producer.start(worker=False)
        yield deployed
    finally:
        await producer.stop()
        deployed.stop()
        broker = producer.broker
        if isinstance(broker, RedisBroker):
            await broker.purge()
        await producer.backend.clear()
        await producer.close()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A page of headless Debian Chromium, in a time zone other than the server's (UTC);
    every confirmation dialog is accepted."""
    executable = require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        context = await browser.new_context(
            viewport={"width": 1280, "height": 860}, timezone_id="Europe/Paris"
        )
        opened = await context.new_page()

        async def accept(dialog: Dialog) -> None:
            await dialog.accept()

        opened.on("dialog", accept)
        try:
            yield opened
        finally:
            await browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """The folder screenshots are saved in (see :data:`SCREENSHOTS_ENV`)."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
