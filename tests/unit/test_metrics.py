"""The Prometheus exposition, parsed back after real tasks ran."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flowrra import Config, ExecutorConfig, Flowrra
from flowrra.management import FlowrraManager
from flowrra.metrics import ALL, Snapshot, exposition, render_prometheus

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: bytes) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def build_app() -> Flowrra:
    app = Flowrra(Config(executor=ExecutorConfig(io_workers=2)))

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def nap() -> None:
        await asyncio.sleep(0.03)

    @app.task(max_retries=2, retry_delay=0)
    async def boom() -> None:
        raise ValueError("no")

    return app


@pytest.fixture
async def app() -> AsyncIterator[Flowrra]:
    application = build_app()
    yield application
    await application.close()


async def test_values_after_real_tasks(app: Flowrra) -> None:
    manager = FlowrraManager(app)
    async with app:
        for i in range(6):
            await app.submit("add", i, i)
        await app.submit("nap")
        await app.submit("boom")
        await app.run_until_idle(timeout=10)
        await app.submit("add", 0, 0, countdown=60)
        body, content_type = await render_prometheus(manager)
    assert content_type.startswith("text/plain")
    samples = parse(body)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("flowrra_task_outcomes_total", task="add", outcome="success") == 6
    assert value("flowrra_task_outcomes_total", task="boom", outcome="failed") == 1
    assert value("flowrra_task_outcomes_total", task="boom", outcome="retried") == 2
    assert value("flowrra_task_retries_total", task="boom") == 2
    assert value("flowrra_task_retries_total", task="add") == 0
    assert value("flowrra_task_duration_seconds_count", task="add") == 6
    assert value("flowrra_task_duration_seconds_bucket", task="nap", le="0.025") == 0
    assert value("flowrra_task_duration_seconds_bucket", task="nap", le="+Inf") == 1
    assert 0.03 <= value("flowrra_task_duration_seconds_sum", task="nap") < 5
    assert value("flowrra_workers_alive") == 1
    assert value("flowrra_workers_stale") == 0
    assert value("flowrra_queue_delayed", queue="default") == 1
    assert value("flowrra_queue_in_flight", queue="default") == 0
    assert value("flowrra_dead_letters", queue="default") == 0
    # prometheus_client's global registry is left alone
    assert not any(n.startswith("flowrra_") for n in REGISTRY._names_to_collectors)


def test_queue_depth_per_priority_and_the_fallback_to_totals() -> None:
    detailed = {
        "queues": {"ready": 5, "delayed": 0, "in_flight": 0, "dead": 0},
        "queue_details": [
            {
                "queue": "mail",
                "ready": 5,
                "by_priority": {"10": 2, "0": 3},
                "delayed": 1,
                "in_flight": 2,
                "dead": 4,
                "oldest_age": 12.5,
            }
        ],
        "workers": [
            {"alive": True, "running": 2},
            {"alive": False, "running": 7},
        ],
    }
    samples = parse(exposition(Snapshot(detailed, []))[0])
    assert samples[("flowrra_queue_depth", (("priority", "10"), ("queue", "mail")))] == 2
    assert samples[("flowrra_queue_depth", (("priority", "0"), ("queue", "mail")))] == 3
    assert samples[("flowrra_queue_oldest_age_seconds", (("queue", "mail"),))] == 12.5
    assert samples[("flowrra_dead_letters", (("queue", "mail"),))] == 4
    assert samples[("flowrra_workers_alive", ())] == 1
    assert samples[("flowrra_workers_stale", ())] == 1
    assert samples[("flowrra_tasks_running", ())] == 2
    minimal = {"queues": {"ready": 9, "delayed": None, "in_flight": None, "dead": None}}
    totals = parse(exposition(Snapshot(minimal, []))[0])
    assert totals[("flowrra_queue_depth", (("priority", ALL), ("queue", ALL)))] == 9
    assert not any(name == "flowrra_queue_delayed" for name, _ in totals)


async def test_a_missing_prometheus_client_names_the_extra(
    app: Flowrra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'flowrra\[metrics\]'"):
        await render_prometheus(FlowrraManager(app))
