"""``flowrra status`` and ``flowrra inspect``: read a deployment from the command line.

Both load the app like the other commands, read through :class:`FlowrraManager` (queues,
results and schedules live in the broker, backend and schedule store, so any process sees
what every worker did), print plain-text tables and exit. Nothing is started or changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from flowrra.app import Flowrra
from flowrra.management import FlowrraManager


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """``rows`` as left-aligned text columns under ``headers``."""
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _queues_section(stats: dict[str, Any]) -> str:
    queues = stats["queues"]
    if queues is None:
        return f"Queues: unreadable ({stats['queues_error']})"
    row = [queues["ready"], queues["delayed"], queues["in_flight"], queues["dead"]]
    return "Queues\n" + table(["ready", "delayed", "in flight", "dead"], [row])


def _results_section(stats: dict[str, Any]) -> str:
    results = stats["results"]
    if results is None:
        return f"Results: not listable ({stats['results_error']})"
    return "Results by status\n" + table(["status", "count"], sorted(results.items()))


def _tasks_section(tasks: list[dict[str, Any]]) -> str:
    rows = [
        [t["name"], t["executor"], t["queue"], t["priority"], t["max_retries"], t["timeout"]]
        for t in tasks
    ]
    headers = ["task", "executor", "queue", "priority", "max retries", "timeout"]
    return "Registered tasks\n" + table(headers, rows)


def _schedules_section(schedules: list[dict[str, Any]]) -> str:
    if not schedules:
        return "Schedules: none"
    rows = [
        [s["id"], s["task_name"], s["schedule_type"], s["schedule"], s["enabled"], s["next_run_at"]]
        for s in schedules
    ]
    headers = ["id", "task", "type", "schedule", "enabled", "next run (UTC)"]
    return "Schedules\n" + table(headers, rows)


async def status_report(app: Flowrra) -> str:
    """The ``flowrra status`` text: queues, results by status, tasks and schedules."""
    manager = FlowrraManager(app)
    stats = await manager.get_stats()
    sections = [
        _queues_section(stats),
        _results_section(stats),
        _tasks_section(await manager.list_registered_tasks()),
        _schedules_section(await manager.list_schedules()),
    ]
    return "\n\n".join(sections)


async def inspect_report(app: Flowrra, task_id: str) -> str | None:
    """The ``flowrra inspect`` text: one task's full record as JSON, or None if unknown."""
    record = await FlowrraManager(app).get_task_result(task_id)
    return None if record is None else json.dumps(record, indent=2, sort_keys=True)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status`` and ``inspect`` subcommands to the ``flowrra`` parser."""
    status = commands.add_parser("status", help="print queues, results and schedules")
    status.add_argument("app", help="the app, as module:attribute")
    inspect = commands.add_parser("inspect", help="print one task's record")
    inspect.add_argument("app", help="the app, as module:attribute")
    inspect.add_argument("task_id", help="the task id")
