"""Input checks shared by the management API: every bad value becomes a ``ValueError``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def check_limit(limit: object, *, allow_none: bool = True) -> int | None:
    """``limit`` as an int >= 0 (or ``None`` when allowed); ``ValueError`` otherwise."""
    if limit is None and allow_none:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
    return limit


def check_offset(offset: object) -> int:
    """``offset`` as an int >= 0; ``ValueError`` otherwise."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    return offset


def check_id(value: object, what: str) -> str:
    """``value`` as a non-empty string; ``ValueError`` otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def is_id(value: object) -> bool:
    """True for a non-empty string (lookups answer ``None`` for anything else)."""
    return isinstance(value, str) and bool(value)


def check_arguments(
    args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments as a tuple and a dict; ``ValueError`` otherwise."""
    if args is None:
        args = ()
    if isinstance(args, str | bytes) or not isinstance(args, list | tuple):
        raise ValueError(f"args must be a list or tuple, got {type(args).__name__}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError("kwargs must be a mapping with string keys")
    return tuple(args), dict(kwargs)
