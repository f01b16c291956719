"""CronExpression: syntax, zones, daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flowrra.scheduler import CronExpression

NEW_YORK = "America/New_York"


def runs_between(expr: CronExpression, start: datetime, end: datetime) -> list[datetime]:
    times: list[datetime] = []
    current = expr.next_run(start)
    while current <= end:
        times.append(current)
        current = expr.next_run(current)
    return times


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", datetime(2024, 1, 1, 10, 7, tzinfo=UTC), datetime(2024, 1, 1, 10, 15)),
        ("0 9 * * MON-FRI", datetime(2024, 1, 6, 0, 0, tzinfo=UTC), datetime(2024, 1, 8, 9, 0)),
        ("0 0 1 JAN *", datetime(2024, 3, 1, tzinfo=UTC), datetime(2025, 1, 1)),
        ("@hourly", datetime(2024, 1, 1, 10, 0, tzinfo=UTC), datetime(2024, 1, 1, 11, 0)),
        ("@daily", datetime(2024, 1, 1, 10, 0, tzinfo=UTC), datetime(2024, 1, 2)),
        # day of month OR day of week: the 13th, or any Friday (Jan 5 2024 is a Friday)
        ("0 0 13 * FRI", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 5)),
        ("30 4 1,15 * *", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 15, 4, 30)),
    ],
)
def test_next_run(expr: str, after: datetime, expected: datetime) -> None:
    assert CronExpression(expr).next_run(after) == expected.replace(tzinfo=UTC)


def test_next_run_is_strictly_after_and_naive_means_utc() -> None:
    cron = CronExpression("0 * * * *")
    at = datetime(2024, 1, 1, 10, 0)
    assert cron.next_run(at) == datetime(2024, 1, 1, 11, 0, tzinfo=UTC)
    assert cron.next_run().tzinfo is UTC


def test_matches() -> None:
    cron = CronExpression("*/5 * * * *")
    assert cron.matches(datetime(2024, 1, 1, 10, 5, 42, tzinfo=UTC))
    assert not cron.matches(datetime(2024, 1, 1, 10, 6, tzinfo=UTC))


@pytest.mark.parametrize(
    "bad", ["", "* * *", "* * * * * *", "61 * * * *", "* 25 * * *", "@reboot", "not cron"]
)
def test_invalid_expressions(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        CronExpression(bad)


def test_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        CronExpression("* * * * *", "Mars/Olympus_Mons")


def test_zone() -> None:
    cron = CronExpression("0 9 * * *", "Asia/Tokyo")
    assert cron.next_run(datetime(2023, 12, 31, 23, tzinfo=UTC)) == datetime(2024, 1, 1, tzinfo=UTC)


def test_spring_forward_skipped_time_runs_once_at_the_jump() -> None:
    cron = CronExpression("30 2 * * *", NEW_YORK)
    runs = runs_between(
        cron, datetime(2024, 3, 9, 12, tzinfo=UTC), datetime(2024, 3, 11, 12, tzinfo=UTC)
    )
    # 2024-03-10 02:30 does not exist in New York: it runs once, at 03:00 EDT (07:00 UTC).
    assert runs == [
        datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
        datetime(2024, 3, 11, 6, 30, tzinfo=UTC),
    ]


def test_fall_back_repeated_time_runs_once() -> None:
    cron = CronExpression("30 1 * * *", NEW_YORK)
    runs = runs_between(
        cron, datetime(2024, 11, 2, 12, tzinfo=UTC), datetime(2024, 11, 4, 12, tzinfo=UTC)
    )
    # 01:30 happens twice on 2024-11-03; only the first (EDT, 05:30 UTC) fires.
    assert runs == [
        datetime(2024, 11, 3, 5, 30, tzinfo=UTC),
        datetime(2024, 11, 4, 6, 30, tzinfo=UTC),
    ]


def test_fall_back_wildcard_hour_keeps_running_through_both_passes() -> None:
    cron = CronExpression("*/30 * * * *", NEW_YORK)
    start = datetime(2024, 11, 3, 4, 0, tzinfo=UTC)
    runs = runs_between(cron, start, start + timedelta(hours=4))
    assert runs == [start + timedelta(minutes=30 * k) for k in range(1, 9)]


def test_spring_forward_wildcard_hour_has_no_duplicate_instants() -> None:
    cron = CronExpression("*/20 * * * *", NEW_YORK)
    runs = runs_between(
        cron, datetime(2024, 3, 10, 5, tzinfo=UTC), datetime(2024, 3, 10, 9, tzinfo=UTC)
    )
    assert len(runs) == len(set(runs)) == 12
