"""The JSON boundary every task argument and result crosses.

flowrra promises that task code behaves the same in-process and across processes (Redis).
So arguments and results are held to what JSON can carry even in-process: a value that
JSON cannot represent fails here, at submit time for arguments, and as a task failure for
results. Containers are copied through JSON, so a task sees exactly what a remote worker
would see (tuples arrive as lists) and later changes by the caller do not leak in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from flowrra.exceptions import SerializationError
from flowrra.task import iso_text

if TYPE_CHECKING:
    from flowrra.task import Task, TaskResult

SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
"""Types whose values JSON carries unchanged (checked by exact type, not isinstance)."""


def json_roundtrip(value: Any, what: str) -> Any:
    """Return ``value`` as a JSON encode/decode cycle would give it back.

    Scalars are returned as they are (the round trip would not change them). Raises
    :class:`SerializationError` naming ``what`` when JSON cannot represent the value.
    """
    if type(value) in SCALAR_TYPES:
        return value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} cannot be sent as JSON: {exc}") from None


def prepare_arguments(
    task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Check and normalise a call's arguments for transport.

    Returns the arguments as a worker in another process would receive them. Raises
    :class:`SerializationError` (a ``TypeError``) for anything JSON cannot carry.
    """
    scalar = SCALAR_TYPES
    for value in args:
        if type(value) not in scalar:
            break
    else:
        if not kwargs:
            return args, kwargs
        for value in kwargs.values():
            if type(value) not in scalar:
                break
        else:
            return args, kwargs
    what = f"the arguments of task '{task_name}'"
    decoded_args = json_roundtrip(list(args), what)
    decoded_kwargs = json_roundtrip(kwargs, what)
    return tuple(decoded_args), decoded_kwargs


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON: what ``json.dumps(value, separators=(",", ":"))``
    returns, and the same errors (TypeError for a value JSON cannot carry, ValueError for
    a circular reference), without building a ``JSONEncoder`` for every call."""
    if c_make_encoder is None:
        return json.dumps(value, separators=(",", ":"))
    encode = c_make_encoder(
        {}, _not_serializable, encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return "".join(encode(value, 0))


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(raw: bytes | str) -> Any:
    """``json.loads(raw)``: the same value and the same errors (``ValueError``), faster
    for the compact UTF-8 JSON flowrra writes. Anything else (surrounding whitespace,
    other encodings) takes ``json.loads`` itself."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        value, end = _scan_json(text, 0)
    except (StopIteration, UnicodeDecodeError, TypeError):
        return json.loads(raw)
    if end != len(text):
        return json.loads(raw)
    return value


_int_json = int.__repr__


_float_json = float.__repr__


def _value_json(value: Any) -> str:
    """``dumps(value)``, without building an encoder for the common scalars."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return _int_json(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float and math.isfinite(value):
        return _float_json(value)
    return dumps(value)


def _text_json(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _array_json(value: tuple[Any, ...]) -> str:
    return dumps(value) if value else "[]"


def _object_json(value: dict[str, Any]) -> str:
    return dumps(value) if value else "{}"


def _time_json(value: datetime | None) -> str:
    return "null" if value is None else '"' + iso_text(value) + '"'


def encode_record(record: TaskResult) -> str:
    """``dumps(record.to_dict)``, the same text (keys in the same order), built directly.

    A task's record is encoded at every state change, so this is a hot path; the
    equivalence with :attr:`~flowrra.task.TaskResult.to_dict` is tested.
    """
    return "".join(
        (
            '{"task_id":',
            _text_json(record.task_id),
            ',"status":',
            encode_basestring_ascii(str(record.status)),
            ',"task_name":',
            _text_json(record.task_name),
            ',"result":',
            _value_json(record.result),
            ',"error":',
            _text_json(record.error),
            ',"submitted_at":',
            _time_json(record.submitted_at),
            ',"started_at":',
            _time_json(record.started_at),
            ',"finished_at":',
            _time_json(record.finished_at),
            ',"retries":',
            _value_json(record.retries),
            ',"args":',
            _array_json(record.args),
            ',"kwargs":',
            _object_json(record.kwargs),
            ',"deliveries":',
            _value_json(record.deliveries),
            ',"traceback":',
            _text_json(record.traceback),
            ',"worker":',
            _text_json(record.worker),
            ',"attempts":',
            _array_json(record.attempts),
            "}",
        )
    )


def encode_message(task: Task) -> str:
    """``dumps(task.to_message())``, the same text, built directly (a hot path of every
    submit to a remote broker; the equivalence is tested)."""
    return "".join(
        (
            '{"id":',
            _value_json(task.id),
            ',"name":',
            _value_json(task.name),
            ',"args":',
            _array_json(task.args),
            ',"kwargs":',
            _object_json(task.kwargs),
            ',"max_retries":',
            _value_json(task.max_retries),
            ',"retry_delay":',
            _value_json(task.retry_delay),
            ',"current_retry":',
            _value_json(task.current_retry),
            ',"priority":',
            _value_json(task.priority),
            ',"cpu_bound":',
            _value_json(task.cpu_bound),
            ',"queue":',
            _value_json(task.queue),
            ',"executor":',
            _value_json(task.executor),
            ',"timeout":',
            _value_json(task.timeout),
            ',"eta":',
            _value_json(task.eta),
            ',"submitted_at":',
            _time_json(task.submitted_at),
            ',"attempts":' + dumps(task.attempts) + "}" if task.attempts else "}",
        )
    )
