"""Cron expressions read in a time zone, on top of croniter.

Syntax: the standard five fields (minute, hour, day of month, month, day of week), with
names (``JAN``, ``MON``), ranges, lists and steps, and the macros ``@hourly``,
``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``. When both
day of month and day of week are restricted, a day matching *either* fires (standard cron).

Daylight saving time, for an expression read in a zone that has it:

* a wall-clock time the clock skips (02:30 on the spring-forward day) fires once, at the
  moment the clock jumps (03:00 local);
* a wall-clock time the clock shows twice (01:30 on the fall-back day) fires once, at its
  first occurrence, when the hour field names fixed hours; an expression whose hour field
  is ``*`` keeps running through both passes of the repeated hour, as the clock runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flowrra.scheduler.models import as_utc

MACROS = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
)
_ONE_MICROSECOND = timedelta(microseconds=1)


def load_zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (``None``: UTC); ``ValueError`` for an unknown zone."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}: {exc}") from None


def _check_expression(expr: str) -> str:
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(f"invalid cron expression {expr!r}: unknown macro")
        return text.lower()
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"invalid cron expression {expr!r}: expected 5 fields "
            "(minute hour day-of-month month day-of-week)"
        )
    if not croniter.is_valid(text):
        raise ValueError(f"invalid cron expression {expr!r}")
    return text


class CronExpression:
    """A validated cron expression, read in ``timezone`` (an IANA name; ``None``: UTC).

    Raises ``ValueError`` for a malformed expression or an unknown zone. All results are
    timezone-aware UTC datetimes; naive inputs are taken to be UTC.
    """

    __slots__ = ("_every_hour", "_zone", "expression", "timezone")

    def __init__(self, expr: str, timezone: str | None = None) -> None:
        self.expression = _check_expression(expr)
        self.timezone = timezone
        self._zone = load_zone(timezone)
        hours = croniter(self.expression).expanded[1]
        self._every_hour = hours == ["*"] or len(hours) == 24

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, timezone={self.timezone!r})"

    def _is_second_pass(self, local: datetime) -> bool:
        """True for the later occurrence of a repeated wall time that should not fire."""
        if self._every_hour:
            return False
        wall = local.replace(tzinfo=None)
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        return first != second and local.astimezone(UTC) == max(first, second)

    def next_run(self, after: datetime | None = None) -> datetime:
        """The first fire time strictly after ``after`` (default: now)."""
        start = as_utc(after) if after is not None else datetime.now(UTC)
        times = croniter(self.expression, start.astimezone(self._zone))
        while True:
            candidate: datetime = times.get_next(datetime)
            if not self._is_second_pass(candidate):
                return candidate.astimezone(UTC)

    def prev_run(self, at_or_before: datetime) -> datetime:
        """The last fire time at or before ``at_or_before``."""
        start = as_utc(at_or_before) + _ONE_MICROSECOND
        times = croniter(self.expression, start.astimezone(self._zone))
        while True:
            candidate: datetime = times.get_prev(datetime)
            if not self._is_second_pass(candidate):
                return candidate.astimezone(UTC)

    def matches(self, dt: datetime) -> bool:
        """True when the minute containing ``dt`` is a fire time of this expression.

        This follows the firing rules above, so on a spring-forward day ``30 2 * * *``
        matches 03:00 local (when it fires) and never 02:30 (which does not exist).
        """
        minute = as_utc(dt).replace(second=0, microsecond=0)
        return self.next_run(minute - _ONE_MICROSECOND) == minute


@lru_cache(maxsize=1024)
def cron_for(expr: str, timezone: str | None) -> CronExpression:
    """A cached :class:`CronExpression` (they are immutable)."""
    return CronExpression(expr, timezone)
