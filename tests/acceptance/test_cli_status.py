"""``flowrra status`` and ``flowrra inspect`` as real processes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from worker_harness import deployment, producer, run_command

from _services import require_redis


def test_status_of_an_in_process_app_lists_its_tasks() -> None:
    outcome = run_command("status", "scheduled_app:app")
    assert outcome.returncode == 0, outcome.stderr
    assert "Registered tasks" in outcome.stdout
    assert "record_run" in outcome.stdout
    assert "Schedules: none" in outcome.stdout


def test_status_and_inspect_read_what_redis_holds(tmp_path: Path) -> None:
    url = require_redis()

    async def scenario() -> None:
        with deployment(url, tmp_path) as deployed:
            async with producer(deployed) as app:
                ids = [await app.submit("sleepy", f"k{n}", 1.0) for n in range(3)]
                env = deployed.env()
                status = await asyncio.to_thread(run_command, "status", "worker_app:app", env=env)
                found = await asyncio.to_thread(
                    run_command, "inspect", "worker_app:app", ids[0], env=env
                )
                missing = await asyncio.to_thread(
                    run_command, "inspect", "worker_app:app", "no-such-task", env=env
                )
        assert status.returncode == 0, status.stderr
        queue_table = status.stdout.split("Results by status")[0]
        assert queue_table.splitlines()[-2].split()[:4] == ["3", "0", "0", "0"], status.stdout
        assert re.search(r"^pending +3$", status.stdout, re.MULTILINE), status.stdout
        assert found.returncode == 0, found.stderr
        record = json.loads(found.stdout)
        assert (record["task_id"], record["status"], record["args"]) == (
            ids[0],
            "pending",
            ["k0", 1.0],
        )
        assert missing.returncode == 1
        assert "no task 'no-such-task'" in missing.stderr

    asyncio.run(scenario())
