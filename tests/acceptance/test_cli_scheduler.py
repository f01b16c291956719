"""``flowrra scheduler`` as a real process: runs schedules and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flowrra.registry import TaskRegistry
from flowrra.scheduler import Scheduler
from flowrra.scheduler.backends import get_scheduler_backend

HERE = Path(__file__).parent


async def define_schedule(url: str) -> None:
    registry = TaskRegistry()

    @registry.task(name="record_run")
    async def record_run(label: str) -> None:
        return None

    scheduler = Scheduler(get_scheduler_backend(url), registry)
    await scheduler.schedule_interval("record_run", 0.2, args=("tick",))
    await scheduler.close()


def test_scheduler_command_runs_schedules_and_exits_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schedule.db'}"
    output = tmp_path / "runs.txt"
    asyncio.run(define_schedule(url))
    env = {**os.environ, "FLOWRRA_TEST_OUTPUT": str(output)}
    command = [
        sys.executable,
        "-m",
        "flowrra",
        "scheduler",
        "scheduled_app:app",
        "--database-url",
        url,
        "--check-interval",
        "0.1",
    ]
    process = subprocess.Popen(
        command, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if output.exists() and len(output.read_text().split()) >= 3:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        logs, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, logs
    assert "scheduler stopped" in logs
    assert output.read_text().split().count("tick") >= 3


def test_scheduler_command_rejects_a_bad_app_spec() -> None:
    outcome = subprocess.run(
        [sys.executable, "-m", "flowrra", "scheduler", "no_such_module:app"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome.returncode != 0
    assert "cannot import 'no_such_module'" in outcome.stderr
