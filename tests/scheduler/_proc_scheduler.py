"""A scheduler process for the multi-process test.

Usage: ``python _proc_scheduler.py URL TABLE SECONDS OUTFILE``. Registers the schedules
of :data:`INTERVALS`, runs the scheduler loop for ``SECONDS`` and appends one line per
submitted run to ``OUTFILE``: ``<task id> <submission time as epoch seconds>``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from flowrra.registry import TaskRegistry
from flowrra.scheduler import Scheduler
from flowrra.scheduler.backends import get_scheduler_backend

INTERVALS = (0.2, 0.35)


async def main(url: str, table: str, seconds: float, out: TextIO) -> None:
    registry = TaskRegistry()

    @registry.task
    async def beat(*args: Any, **kwargs: Any) -> None:
        return None

    async def submit(
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_id: str,
        priority: int,
        max_retries: int,
        retry_delay: float,
    ) -> str:
        out.write(f"{task_id} {time.time():.6f}\n")
        out.flush()
        return task_id

    backend = get_scheduler_backend(url, table_name=table)
    scheduler = Scheduler(backend, registry, check_interval=60.0, submit=submit)
    for every in INTERVALS:
        await scheduler.schedule_interval("beat", every)
    await scheduler.start()
    await asyncio.sleep(seconds)
    await scheduler.close()


if __name__ == "__main__":
    with open(sys.argv[4], "a", encoding="utf-8") as output:
        asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), output))
