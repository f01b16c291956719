"""Task records as the dashboard shows them: redacted, listed across statuses."""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable
from typing import Any

from flowrra.management import FlowrraManager

logger = logging.getLogger("flowrra.ui")

RedactHook = Callable[[str, dict[str, Any]], dict[str, Any]]

#: What replaces the data of a record whose redaction hook failed.
REDACTION_FAILED = "[hidden: the redaction hook failed]"
_SENSITIVE = ("args", "kwargs", "result", "error", "traceback", "attempts")


class Redactor:
    """Applies the user's redaction hook to every record before it is shown.

    The hook gets the task name and a deep copy of the record, and returns the record to
    show. When the hook raises or returns something other than a dict, the record is
    shown with ``args``, ``kwargs``, ``result``, ``error``, ``traceback`` and
    ``attempts`` hidden (errors often quote arguments; the failure is logged): a broken
    hook never leaks what it was meant to hide.
    """

    def __init__(self, hook: RedactHook | None) -> None:
        self.hook = hook

    def record(self, name: str | None, record: dict[str, Any]) -> dict[str, Any]:
        """The record to show for task ``name`` (unchanged without a hook)."""
        if self.hook is None:
            return record
        try:
            shown = self.hook(name or "", copy.deepcopy(record))
            if inspect.isawaitable(shown) or not isinstance(shown, dict):
                raise TypeError(f"the redaction hook returned {type(shown).__name__}")
        except Exception:
            logger.exception("the dashboard's redaction hook failed for task %r", name)
            return {**record, **{key: REDACTION_FAILED for key in _SENSITIVE if key in record}}
        return shown

    def task(self, record: dict[str, Any]) -> dict[str, Any]:
        """A task record (``TaskResult.to_dict``), redacted."""
        return self.record(record.get("task_name"), record)

    def tasks(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Task records, each redacted."""
        return [self.task(record) for record in records]

    def dead_letter(self, letter: dict[str, Any]) -> dict[str, Any]:
        """A dead letter: its queued message (``task``, which holds the arguments) is
        redacted as a record of its task."""
        message = letter.get("task")
        if not isinstance(message, dict):
            return letter
        return {**letter, "task": self.record(letter.get("task_name"), message)}

    def schedule(self, schedule: dict[str, Any]) -> dict[str, Any]:
        """A schedule (its ``args`` and ``kwargs``), redacted."""
        return self.record(schedule.get("task_name"), schedule)


async def list_records(
    manager: FlowrraManager, status: str | None, limit: int, offset: int, name: str | None
) -> list[dict[str, Any]]:
    """Records in ``status``, most recent first (every status when ``None``: the most
    recently changed first), optionally only of task ``name``, skipping ``offset`` and
    returning at most ``limit``.

    Raises what ``manager.list_tasks`` raises (``NotImplementedError`` for a backend that
    cannot list).
    """
    if status is None:
        return await manager.list_recent_tasks(limit, offset, name=name)
    return await manager.list_tasks(status, limit, offset, name=name)
