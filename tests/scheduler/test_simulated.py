"""Three scheduler instances share each store over one simulated hour.

One instance is dropped halfway (no stop, no close: as if its process died) and a new
one starts later. The submitted runs must be exactly the expected (schedule, nominal
time) pairs: none twice, none missing, none before its time.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta

from flowrra.registry import TaskRegistry
from flowrra.scheduler import Scheduler
from flowrra.scheduler.timing import run_task_id

from .conftest import T0, Recorder, SimClock, Store

HOUR = 3600.0
CRONS = ["* * * * *", "* * * * *", "*/5 * * * *", "*/5 * * * *", "0 * * * *", "30 * * * *"]
INTERVALS = [7.0, 7.0, 11.5]
ONE_TIME_OFFSETS = [-10.0, 0.0, 100.5, 1799.9, 1800.0, 3599.0]


def minute_marks(step_minutes: int, start: datetime, end: datetime) -> list[datetime]:
    mark = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    marks = []
    while mark <= end:
        if mark.minute % step_minutes == 0:
            marks.append(mark)
        mark += timedelta(minutes=1)
    return marks


def cron_times(expr: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire times of the few expressions above, computed without the library."""
    minute, _ = expr.split(" ", 1)
    if minute == "*":
        return minute_marks(1, start, end)
    if minute == "*/5":
        return minute_marks(5, start, end)
    return [t for t in minute_marks(1, start, end) if t.minute == int(minute)]


async def define(scheduler: Scheduler) -> dict[str, list[datetime]]:
    """Register every schedule; return schedule id -> expected nominal times."""
    end = T0 + timedelta(seconds=HOUR)
    expected: dict[str, list[datetime]] = {}
    for n, expr in enumerate(CRONS):
        sid = await scheduler.schedule_cron("job", expr, args=(n,))
        expected[sid] = cron_times(expr, T0, end)
    for n, every in enumerate(INTERVALS):
        sid = await scheduler.schedule_interval("job", every, kwargs={"n": n}, priority=n)
        count = int(HOUR // every)
        expected[sid] = [T0 + timedelta(seconds=every * k) for k in range(1, count + 1)]
    for n, offset in enumerate(ONE_TIME_OFFSETS):
        run_at = T0 + timedelta(seconds=offset)
        expected[await scheduler.schedule_once("report", run_at, args=(n,))] = [run_at]
    return expected


async def test_three_instances_one_simulated_hour(
    store: Store, registry: TaskRegistry, clock: SimClock, recorder: Recorder
) -> None:
    def instance() -> Scheduler:
        return Scheduler(store.open(), registry, submit=recorder, clock=clock, batch_size=4)

    alive = [instance() for _ in range(3)]
    definitions = await asyncio.gather(*(define(s) for s in alive))
    assert definitions[0] == definitions[1] == definitions[2]
    expected = definitions[0]
    assert len(await alive[0].list_scheduled_tasks()) == len(expected)

    rng = random.Random(20240501)
    end = T0 + timedelta(seconds=HOUR)
    killed = restarted = False
    while clock.now < end:
        clock.now = min(end, clock.now + timedelta(seconds=rng.uniform(0.2, 6.5)))
        if not killed and clock.now >= T0 + timedelta(seconds=HOUR / 2):
            alive.pop(rng.randrange(len(alive)))  # dropped: nothing stopped or released
            killed = True
        if not restarted and clock.now >= T0 + timedelta(seconds=HOUR * 0.75):
            newcomer = instance()
            assert await define(newcomer) == expected
            alive.append(newcomer)
            restarted = True
        ticking = rng.sample(alive, rng.randint(1, len(alive)))
        await asyncio.gather(*(s.tick() for s in ticking))

    nominal = {run_task_id(sid, at): at for sid, times in expected.items() for at in times}
    assert len(nominal) == sum(len(times) for times in expected.values())
    submitted = Counter(recorder.task_ids)
    assert [tid for tid, n in submitted.items() if n > 1] == []
    assert set(submitted) - set(nominal) == set()
    assert set(nominal) - set(submitted) == set()
    early = [c for c in recorder.calls if c.at < nominal[c.task_id]]
    assert early == []
