"""Checking what a request asks for: every bad value raises :class:`HTTPError` 400."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowrra.task import TaskStatus
from flowrra.ui.messages import HTTPError

#: The largest page a listing returns.
MAX_LIMIT = 1000
#: The largest offset a listing accepts.
MAX_OFFSET = 1_000_000
#: The longest id (task id, schedule id, task name) a path may carry.
MAX_ID_LENGTH = 256

STATUSES = tuple(status.value for status in TaskStatus)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _integer(query: Mapping[str, str], key: str, default: int, high: int) -> int:
    text = query.get(key)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPError(400, f"{key} must be an integer, got {text!r}") from None
    if not 0 <= value <= high:
        raise HTTPError(400, f"{key} must be between 0 and {high}, got {value}")
    return value


def limit_of(query: Mapping[str, str], default: int = 50) -> int:
    """The ``limit`` query parameter: an integer from 0 to :data:`MAX_LIMIT`."""
    return _integer(query, "limit", default, MAX_LIMIT)


def offset_of(query: Mapping[str, str]) -> int:
    """The ``offset`` query parameter: an integer from 0 to :data:`MAX_OFFSET`."""
    return _integer(query, "offset", 0, MAX_OFFSET)


def status_of(query: Mapping[str, str]) -> str | None:
    """The ``status`` query parameter: a task status, or ``None`` for all (absent,
    empty or ``all``)."""
    text = query.get("status", "")
    if text in ("", "all"):
        return None
    if text not in STATUSES:
        raise HTTPError(400, f"status must be one of all, {', '.join(STATUSES)}; got {text!r}")
    return text


def flag_of(query: Mapping[str, str], key: str) -> bool:
    """A boolean query parameter (``1/true/yes/on`` or ``0/false/no/off``; absent: False)."""
    text = query.get(key, "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise HTTPError(400, f"{key} must be true or false, got {query[key]!r}")


def identifier(value: str, what: str) -> str:
    """``value`` if it can be an id: 1 to :data:`MAX_ID_LENGTH` printable characters."""
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise HTTPError(400, f"{what} must be 1 to {MAX_ID_LENGTH} printable characters")
    return value


def name_of(query: Mapping[str, str]) -> str | None:
    """The ``name`` filter of a listing, or ``None`` when absent or empty."""
    text = query.get("name", "").strip()
    return identifier(text, "name") if text else None


def json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; 400 for anything else, including a string
    with a lone surrogate escape (``"\\ud800"``), which no UTF-8 store or response holds."""
    if not body.strip():
        raise HTTPError(400, "the request body must be a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, "the request body holds a lone surrogate (\\ud800-\\udfff)") from None
    return data


def required(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``data[key]``, which must be present and of ``kind`` (booleans are not numbers)."""
    if key not in data:
        raise HTTPError(400, f"missing field '{key}'")
    return checked(data, key, kind)


def optional(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``data[key]`` checked as in :func:`required`, or ``None`` when absent or null."""
    if data.get(key) is None:
        return None
    return checked(data, key, kind)


def checked(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``data[key]`` if it is a ``kind``; 400 naming the field otherwise."""
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise HTTPError(400, f"field '{key}' has the wrong type")
    if not isinstance(value, kinds):
        raise HTTPError(400, f"field '{key}' has the wrong type")
    return value
