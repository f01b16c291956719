"""Reading the JSON body of a schedule creation into the manager's arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowrra.registry import TaskRegistry
from flowrra.ui.messages import HTTPError
from flowrra.ui.params import identifier, optional, required

_NUMBER = (int, float)
_COMMON: dict[str, type | tuple[type, ...]] = {
    "args": list,
    "kwargs": dict,
    "description": str,
    "max_retries": int,
    "retry_delay": _NUMBER,
    "priority": int,
}
_EXTRA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "cron": {"enabled": bool, "timezone": str, "catch_up": bool},
    "interval": {"enabled": bool, "catch_up": bool},
    "once": {},
}
_TIMING: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "cron": ("cron", str),
    "interval": ("interval", _NUMBER),
    "once": ("run_at", str),
}


def schedule_arguments(
    kind: str, body: Mapping[str, Any], registry: TaskRegistry
) -> tuple[str, Any, dict[str, Any]]:
    """``(task_name, timing, options)`` for ``FlowrraManager.create_schedule_<kind>``.

    ``body`` must hold ``task_name`` (a registered task) and the timing field (``cron``,
    ``interval`` or ``run_at``); the other fields are optional. Raises
    :class:`HTTPError` 400 for a missing field, a field of the wrong type, an unknown
    field or a task name that is not registered.
    """
    timing_key, timing_kind = _TIMING[kind]
    allowed = {"task_name", timing_key, *_COMMON, *_EXTRA[kind]}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise HTTPError(400, f"unknown field(s): {', '.join(unknown)}")
    name = identifier(required(body, "task_name", str), "task_name")
    if not registry.is_registered(name):
        raise HTTPError(400, f"task '{name}' is not registered")
    timing = required(body, timing_key, timing_kind)
    options: dict[str, Any] = {}
    for key, key_kind in {**_COMMON, **_EXTRA[kind]}.items():
        value = optional(body, key, key_kind)
        if value is not None:
            options[key] = value
    return name, timing, options
