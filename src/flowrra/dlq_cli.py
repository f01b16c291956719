"""``flowrra dlq``: list, requeue and purge the dead-letter set from the command line.

    flowrra dlq list APP [--limit N] [--json]
    flowrra dlq requeue APP TASK_ID... | --all
    flowrra dlq purge APP --yes

Each loads the app like the other commands and acts through
:class:`~flowrra.management.FlowrraManager`, so it sees what every worker of the broker
dead-lettered. Exit codes follow ``flowrra``'s: 0 done, 1 when a task could not be requeued
(unknown id, or a live task holds it) or the broker cannot act, 2 for a usage error (no id
and no ``--all``, both, or ``purge`` without ``--yes``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from flowrra._tables import table
from flowrra.app import Flowrra
from flowrra.management import FlowrraManager
from flowrra.supervisor import USAGE_ERROR

_PAGE = 1000  # dead letters read at a time by ``requeue --all``
_REASON_WIDTH = 60


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def add_dlq_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dlq`` and its ``list``, ``requeue`` and ``purge`` subcommands."""
    dlq = commands.add_parser("dlq", help="list, requeue or purge dead-lettered tasks")
    actions = dlq.add_subparsers(dest="dlq_action", required=True)
    listing = actions.add_parser("list", help="print the dead letters, newest first")
    listing.add_argument("app", help="the app, as module:attribute")
    listing.add_argument(
        "--limit", type=_non_negative, default=100, help="most to print (default 100)"
    )
    listing.add_argument("--json", action="store_true", help="print them as a JSON list")
    requeue = actions.add_parser("requeue", help="put dead-lettered tasks back in their queue")
    requeue.add_argument("app", help="the app, as module:attribute")
    requeue.add_argument("task_ids", nargs="*", metavar="TASK_ID", help="the tasks to requeue")
    requeue.add_argument("--all", action="store_true", help="requeue every dead letter")
    purge = actions.add_parser("purge", help="drop every dead letter")
    purge.add_argument("app", help="the app, as module:attribute")
    purge.add_argument("--yes", action="store_true", help="confirm: nothing is dropped without it")


def _shorten(reason: str) -> str:
    line = reason.splitlines()[0] if reason else ""
    return line if len(line) <= _REASON_WIDTH else line[: _REASON_WIDTH - 3] + "..."


def format_letters(letters: list[dict[str, Any]]) -> str:
    """The ``dlq list`` table (or ``Dead letters: none``)."""
    if not letters:
        return "Dead letters: none"
    rows = [
        [
            letter["task_id"],
            letter["task_name"],
            letter["task"].get("queue", "default"),
            datetime.fromisoformat(letter["buried_at"]).strftime("%Y-%m-%d %H:%M:%S"),
            _shorten(letter["reason"]),
        ]
        for letter in letters
    ]
    return table(["task id", "task", "queue", "buried (UTC)", "reason"], rows)


async def _list(manager: FlowrraManager, args: argparse.Namespace) -> int:
    letters = await manager.list_dead_letters(args.limit)
    print(json.dumps(letters, indent=2) if args.json else format_letters(letters))
    return 0


async def _every_dead_id(manager: FlowrraManager) -> list[str]:
    """The ids of every dead letter now (read in pages; the set may change meanwhile)."""
    ids: list[str] = []
    seen: set[str] = set()
    limit = _PAGE
    while True:
        letters = await manager.list_dead_letters(limit)
        fresh = [d["task_id"] for d in letters if d["task_id"] not in seen]
        ids.extend(fresh)
        seen.update(fresh)
        if len(letters) < limit:
            return ids
        limit += _PAGE


async def _requeue(manager: FlowrraManager, args: argparse.Namespace) -> int:
    if bool(args.task_ids) == args.all:
        print("flowrra dlq requeue: give task ids or --all (not both)", file=sys.stderr)
        return USAGE_ERROR
    ids = await _every_dead_id(manager) if args.all else list(args.task_ids)
    failed = 0
    for task_id in ids:
        try:
            await manager.requeue_dead_letter(task_id)
        except ValueError as error:
            failed += 1
            print(f"flowrra dlq requeue: {error}", file=sys.stderr)
        else:
            print(f"requeued {task_id}")
    print(f"{len(ids) - failed} requeued, {failed} failed")
    return 1 if failed else 0


async def _purge(manager: FlowrraManager, args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            "flowrra dlq purge: this drops every dead letter for good; run again with --yes",
            file=sys.stderr,
        )
        return USAGE_ERROR
    try:
        removed = (await manager.purge_dead_letters())["removed"]
    except ValueError as error:
        print(f"flowrra dlq purge: {error}", file=sys.stderr)
        return 1
    print(f"removed {removed} dead letter(s)")
    return 0


async def run_dlq(app: Flowrra, args: argparse.Namespace) -> int:
    """Run the ``dlq`` action ``args`` names on ``app``, then close it; the exit code."""
    manager = FlowrraManager(app)
    actions = {"list": _list, "requeue": _requeue, "purge": _purge}
    try:
        return await actions[args.dlq_action](manager, args)
    finally:
        await app.close()
