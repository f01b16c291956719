"""The ``workers`` health check: somebody runs the app's tasks, and nobody went silent."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flowrra.telemetry.store import WorkerPresence

if TYPE_CHECKING:
    from flowrra.app import Flowrra


def app_queues(app: Flowrra) -> list[str]:
    """The queues the app's registered tasks go to (``["default"]`` with none), sorted."""
    registry = app.registry
    queues = {registry.get_or_raise(name).options_.queue for name in registry}
    return sorted(queues or {"default"})


def _stale(worker: WorkerPresence, now: float) -> str:
    return (
        f"worker {worker.id} ({worker.hostname}, pid {worker.pid}) has sent no heartbeat "
        f"for {now - worker.last_heartbeat:.0f}s"
    )


async def workers_check(app: Flowrra) -> dict[str, Any]:
    """Healthy when every queue of the app's tasks is served by an alive worker (or this
    process runs a worker) and no worker seen in the last 10 minutes is stale.

    Besides ``healthy``/``reason``/``detail``: ``alive`` (how many workers are alive) and
    ``stale`` (ids of workers whose heartbeat is older than three intervals).
    """
    now = time.time()
    workers = await app.telemetry.workers(now)
    alive = [worker for worker in workers if worker.alive(now)]
    stale = [worker for worker in workers if not worker.alive(now)]
    reasons = [_stale(worker, now) for worker in stale]
    queues = app_queues(app)
    runs_here = app.heartbeat is not None
    if not runs_here:
        served = {queue for worker in alive for queue in worker.queues}
        unserved = [queue for queue in queues if queue not in served]
        if unserved:
            reasons.insert(0, f"no alive worker serves queue(s) {', '.join(unserved)}")
    extra = {"alive": len(alive), "stale": [worker.id for worker in stale]}
    if reasons:
        return {"healthy": False, "reason": "; ".join(reasons), "detail": None, **extra}
    here = " (one in this process)" if runs_here else ""
    detail = f"{len(alive)} alive worker(s){here} serve {', '.join(queues)}"
    return {"healthy": True, "reason": None, "detail": detail, **extra}
