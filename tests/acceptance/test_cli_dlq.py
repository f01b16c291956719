"""``flowrra dlq list / requeue / purge`` as real processes against Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from worker_harness import Deployment, counts, deployment, producer, run_command

from _services import require_redis
from flowrra import Flowrra
from flowrra.brokers.redis import RedisBroker

REASON = "gave up on purpose"


async def dlq(deployed: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_command, "dlq", *args, env=deployed.env())


async def bury(app: Flowrra, count: int) -> list[str]:
    """Submit ``count`` tasks and dead-letter them, as a worker giving up would."""
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    ids = [await app.submit("sleepy", f"k{n}", 0.01, priority=n) for n in range(count)]
    for _ in ids:
        delivery = await asyncio.wait_for(broker.claim(["default:io"]), 10)
        assert await broker.bury(delivery, REASON)
    return ids


def test_list_requeue_and_purge_dead_letters(tmp_path: Path) -> None:
    url = require_redis()

    async def scenario() -> None:
        with deployment(url, tmp_path) as deployed:
            async with producer(deployed) as app:
                ids = await bury(app, 3)
                table = await dlq(deployed, "list", "worker_app:app")
                assert table.returncode == 0, table.stderr
                lines = table.stdout.splitlines()
                assert lines[0].split()[:3] == ["task", "id", "task"]
                assert len(lines) == 2 + 3
                for task_id in ids:
                    assert task_id in table.stdout
                assert REASON in table.stdout
                listed = await dlq(deployed, "list", "worker_app:app", "--json")
                letters = json.loads(listed.stdout)
                assert sorted(d["task_id"] for d in letters) == sorted(ids)
                assert {d["task_name"] for d in letters} == {"sleepy"}
                one = await dlq(deployed, "list", "worker_app:app", "--json", "--limit", "1")
                assert len(json.loads(one.stdout)) == 1

                partly = await dlq(deployed, "requeue", "worker_app:app", ids[0], "no-such-task")
                assert partly.returncode == 1, partly.stdout + partly.stderr
                assert f"requeued {ids[0]}" in partly.stdout
                assert "'no-such-task' is not dead-lettered" in partly.stderr
                after = await counts(app)
                assert (after.ready, after.dead) == (1, 2)
                record = await app.get_result(ids[0])
                assert record is not None
                assert record.status == "pending"

                everything = await dlq(deployed, "requeue", "worker_app:app", "--all")
                assert everything.returncode == 0, everything.stderr
                assert "2 requeued, 0 failed" in everything.stdout
                after = await counts(app)
                assert (after.ready, after.dead) == (3, 0)
                empty = await dlq(deployed, "list", "worker_app:app")
                assert empty.stdout.strip() == "Dead letters: none"

                for _ in range(3):
                    broker = app.broker
                    assert isinstance(broker, RedisBroker)
                    delivery = await asyncio.wait_for(broker.claim(["default:io"]), 10)
                    assert await broker.bury(delivery, REASON)
                refused = await dlq(deployed, "purge", "worker_app:app")
                assert refused.returncode == 2
                assert "--yes" in refused.stderr
                assert (await counts(app)).dead == 3
                purged = await dlq(deployed, "purge", "worker_app:app", "--yes")
                assert purged.returncode == 0, purged.stderr
                assert "removed 3 dead letter(s)" in purged.stdout
                assert (await counts(app)).dead == 0

    asyncio.run(scenario())


def test_requeue_needs_ids_or_all_but_not_both(tmp_path: Path) -> None:
    url = require_redis()

    async def scenario() -> None:
        with deployment(url, tmp_path) as deployed:
            neither = await dlq(deployed, "requeue", "worker_app:app")
            both = await dlq(deployed, "requeue", "worker_app:app", "some-id", "--all")
            bad_limit = await dlq(deployed, "list", "worker_app:app", "--limit", "-3")
        assert (neither.returncode, both.returncode, bad_limit.returncode) == (2, 2, 2)
        assert "task ids or --all" in neither.stderr
        assert "must be an integer >= 0" in bad_limit.stderr

    asyncio.run(scenario())
