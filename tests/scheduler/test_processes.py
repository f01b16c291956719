"""Three scheduler processes share a PostgreSQL store in real time: no run twice, no gap."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from flowrra.scheduler.backends import get_scheduler_backend
from flowrra.scheduler.timing import run_task_id

from ._proc_scheduler import INTERVALS
from .conftest import Store, store_url

SCRIPT = Path(__file__).with_name("_proc_scheduler.py")
SECONDS = 3.0


@pytest.mark.service
@pytest.mark.slow
async def test_three_processes_submit_each_run_once(tmp_path: Path) -> None:
    url = store_url("postgresql", tmp_path)
    table = f"sched_{uuid.uuid4().hex[:12]}"
    store = Store("postgresql", url, table)
    outputs = [tmp_path / f"proc{n}.log" for n in range(3)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            url,
            table,
            str(SECONDS),
            str(out),
            stderr=asyncio.subprocess.PIPE,
        )
        for out in outputs
    ]
    try:
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
        lines = [line.split() for out in outputs for line in out.read_text().splitlines()]
        backend = get_scheduler_backend(url, table_name=table)
        schedules = await backend.list_all()
        await backend.close()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await store.drop()

    submitted = Counter(task_id for task_id, _ in lines)
    assert [tid for tid, n in submitted.items() if n > 1] == []
    assert len(schedules) == len(INTERVALS)
    submitted_at = {task_id: float(at) for task_id, at in lines}
    for schedule in schedules:
        step = float(schedule.schedule)
        # The runs of each schedule are its first n nominal times, n about SECONDS / step,
        # each submitted soon after its nominal time and never before it.
        nominal = {
            run_task_id(schedule.id, at): at.timestamp()
            for at in (schedule.created_at + timedelta(seconds=step * k) for k in range(1, 200))
        }
        grid = list(nominal)
        fired = [tid for tid in grid if tid in submitted]
        assert fired == grid[: len(fired)]
        assert len(fired) >= int((SECONDS - 1.5) / step)
        lateness = [submitted_at[tid] - nominal[tid] for tid in fired]
        assert min(lateness) >= 0
        assert max(lateness) < 1.0
