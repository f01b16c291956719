"""Messages of the Redis broker as stored in Redis: strict JSON decoding, no unpickling.

:func:`decode_message` accepts only a JSON object of the task-message shape with the
right field types within a size limit; anything else raises
:class:`MalformedMessageError` with the reason, which the broker dead-letters.
"""

from __future__ import annotations

from typing import Any

from flowrra.serialization import loads
from flowrra.task import Task

_NULLABLE_NUMBER = (int, float, type(None))
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "name": (str,),
    "args": (list,),
    "kwargs": (dict,),
    "max_retries": (int,),
    "retry_delay": (int, float),
    "current_retry": (int,),
    "priority": (int,),
    "cpu_bound": (bool,),
    "queue": (str,),
    "executor": (str, type(None)),
    "timeout": _NULLABLE_NUMBER,
    "eta": _NULLABLE_NUMBER,
    "submitted_at": (str, type(None)),
}
_REQUIRED = ("id", "name", "args", "kwargs")


class MalformedMessageError(ValueError):
    """A message read from Redis that is not a valid task; the text is the reason."""


def decode_message(task_id: str, body: bytes, limit: int) -> Task:
    """The task in ``body`` (the message stored under ``task_id``), checked strictly.

    Raises :class:`MalformedMessageError` saying why for anything that is not a JSON
    object of the right shape and field types within ``limit`` bytes. JSON only: nothing is
    ever unpickled.
    """
    if len(body) > limit:
        raise MalformedMessageError(f"message of {len(body)} bytes exceeds the {limit}-byte limit")
    try:
        data = loads(body)
    except (ValueError, RecursionError):
        raise MalformedMessageError("message is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedMessageError("message is not a JSON object")
    _check_fields(data)
    try:
        task = Task.from_message(data)
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedMessageError(f"message has the wrong shape: {error!r}") from None
    if task.id != task_id:
        raise MalformedMessageError(f"message id {task.id!r} differs from its key {task_id!r}")
    return task


def _check_fields(data: dict[str, Any]) -> None:
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise MalformedMessageError(f"message lacks field(s) {', '.join(missing)}")
    for name, kinds in _FIELD_TYPES.items():
        if name in data and not isinstance(data[name], kinds):
            raise MalformedMessageError(
                f"message field {name!r} has type {type(data[name]).__name__}"
            )


def placeholder(task_id: str) -> Task:
    """Stands for a dead-lettered message that is not a valid task."""
    return Task(task_id, "<malformed>", (), {})


def text(value: bytes | str) -> str:
    """``value`` as text (bytes decoded as UTF-8, undecodable bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
