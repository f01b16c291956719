"""``flowrra status`` and ``flowrra inspect``: read a deployment from the command line.

Both load the app like the other commands, read through :class:`FlowrraManager` (queues,
results and schedules live in the broker, backend and schedule store, so any process sees
what every worker did), print plain-text tables and exit. Nothing is started or changed.
The ``dlq`` commands, which do change the dead-letter set, live in :mod:`flowrra.dlq_cli`
and are registered here with them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flowrra._tables import table
from flowrra.app import Flowrra
from flowrra.dlq_cli import add_dlq_command
from flowrra.management import FlowrraManager


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
    """Add the ``status``, ``inspect`` and ``dlq`` subcommands to the ``flowrra`` parser."""
    status = commands.add_parser("status", help="print queues, results and schedules")
    status.add_argument("app", help="the app, as module:attribute")
    inspect = commands.add_parser("inspect", help="print one task's record")
    inspect.add_argument("app", help="the app, as module:attribute")
    inspect.add_argument("task_id", help="the task id")
    add_dlq_command(commands)
