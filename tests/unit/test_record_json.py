"""The direct JSON encoders write exactly what ``dumps`` of the dict form writes, and
``loads`` reads what ``json.loads`` reads."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from flowrra import task as task_module
from flowrra.serialization import dumps, encode_message, encode_record, loads
from flowrra.task import Task, TaskResult, TaskStatus, iso_text

TEXTS = ["", "plain", 'quote " and \\ backslash', "naïve ünïcode ✓", "line\nbreak\ttab", "\u2028"]
VALUES: list[Any] = [
    None,
    0,
    -7,
    2**70,
    True,
    False,
    1.5,
    -0.0,
    1e300,
    math.inf,
    "text",
    "ünï",
    [1, "two", None],
    {"nested": {"list": [1.25, {"deep": True}]}, "ü": "é"},
    [],
    {},
]
TIMES = [
    None,
    datetime(2026, 11, 29, 20, 16, 38, 582782, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds
    datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 6, 1, 12, 0),  # naive
]


def random_record(rng: random.Random) -> TaskResult:
    return TaskResult(
        task_id=rng.choice(TEXTS) or "id",
        status=rng.choice(list(TaskStatus)),
        task_name=rng.choice([None, *TEXTS]),
        result=rng.choice(VALUES),
        error=rng.choice([None, *TEXTS]),
        submitted_at=rng.choice(TIMES),
        started_at=rng.choice(TIMES),
        finished_at=rng.choice(TIMES),
        retries=rng.randrange(5),
        args=tuple(rng.sample(VALUES, rng.randrange(4))),
        kwargs={text: rng.choice(VALUES) for text in rng.sample(TEXTS, rng.randrange(3))},
        deliveries=rng.randrange(4),
        traceback=rng.choice([None, "Traceback (most recent call last):\n  ..."]),
        worker=rng.choice([None, "host-1:42"]),
        attempts=tuple(
            {"attempt": n, "started_at": None, "finished_at": "x", "error": "E", "worker": None}
            for n in range(rng.randrange(3))
        ),
    )


@pytest.mark.parametrize("seed", range(20))
def test_encode_record_matches_dumps_of_to_dict(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        record = random_record(rng)
        assert encode_record(record) == dumps(record.to_dict)


def test_a_record_round_trips_through_encode_record() -> None:
    record = random_record(random.Random(99))
    assert TaskResult.from_dict(json.loads(encode_record(record))).to_dict == record.to_dict


def test_encode_record_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_record(TaskResult("t", TaskStatus.SUCCESS, result=object()))


def test_iso_text_prints_each_zone_as_isoformat_does() -> None:
    utc = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    shifted = utc.astimezone(timezone(timedelta(hours=2)))
    assert utc == shifted  # the same instant...
    assert iso_text(utc) == utc.isoformat() == "2026-11-29T20:00:00+00:00"
    assert iso_text(shifted) == shifted.isoformat() == "2026-11-29T22:00:00+02:00"
    assert iso_text(utc) == "2026-11-29T20:00:00+00:00"  # ...remembered apart


def test_iso_text_memory_is_bounded() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for second in range(10_000):
        moment = start + timedelta(seconds=second)
        assert iso_text(moment) == moment.isoformat()
    assert len(task_module._UTC_ISO) <= task_module._UTC_ISO_SIZE


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":[1,2.5,null,true],"b":"\\u00fc"}',
        '{"a": 1}',
        b"  [1, 2]  ",  # whitespace around: json.loads's own path
        '"x"'.encode("utf-16"),  # another encoding (with its byte order mark)
        b'"\xed\xa0\x80"',  # an encoded lone surrogate: json.loads accepts it
        b"17",
    ],
)
def test_loads_gives_what_json_loads_gives(raw: bytes | str) -> None:
    assert loads(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":1} x', b"\xff\xfe\xfa", b"[1,]", "nul"])
def test_loads_refuses_what_json_loads_refuses(raw: bytes | str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json.loads's own error, whatever its text
        json.loads(raw)
    with pytest.raises(ValueError):  # noqa: PT011
        loads(raw)


def random_task(rng: random.Random) -> Task:
    return Task(
        id=rng.choice(TEXTS) or "id",
        name=rng.choice(TEXTS) or "job",
        args=tuple(rng.sample(VALUES, rng.randrange(4))),
        kwargs={text: rng.choice(VALUES) for text in rng.sample(TEXTS, rng.randrange(3))},
        max_retries=rng.randrange(5),
        retry_delay=rng.choice([0.5, 1.0, 2, 1e-7, 3.25]),
        current_retry=rng.randrange(3),
        priority=rng.randrange(-5, 6),
        cpu_bound=rng.choice([True, False]),
        queue=rng.choice(["default", "reports", "ünï"]),
        executor=rng.choice([None, "io", "gpu"]),
        timeout=rng.choice([None, 1.5, 30, math.nan]),
        eta=rng.choice([None, 1795985533.369, math.inf]),
        submitted_at=rng.choice(TIMES),
        attempts=tuple(
            {"attempt": n, "started_at": None, "finished_at": "x", "error": "E", "worker": None}
            for n in range(rng.randrange(3))
        ),
        worker=rng.choice([None, "host-1:42"]),  # not part of the message
    )


@pytest.mark.parametrize("seed", range(10))
def test_encode_message_matches_dumps_of_to_message(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        task = random_task(rng)
        assert encode_message(task) == dumps(task.to_message())
