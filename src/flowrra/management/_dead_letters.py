"""Dead-letter actions and queue details of the management API."""

from __future__ import annotations

from typing import Any

from flowrra.app import Flowrra
from flowrra.brokers.base import QueueBroker, QueueDetail
from flowrra.events import event_bus
from flowrra.recording import store_and_publish
from flowrra.task import PENDING, TaskResult


def _pending_again(record: TaskResult) -> TaskResult:
    """The record of a requeued task: waiting again, its history and arguments kept."""
    return TaskResult(
        record.task_id,
        PENDING,
        record.task_name,
        submitted_at=record.submitted_at,
        retries=record.retries,
        args=record.args,
        kwargs=record.kwargs,
        worker=record.worker,
        attempts=record.attempts,
    )


def _queue_broker(app: Flowrra) -> QueueBroker | None:
    broker = app.broker
    return broker if isinstance(broker, QueueBroker) else None


async def requeue(app: Flowrra, task_id: str) -> None:
    """Put dead-lettered ``task_id`` back in its queue and mark its record pending.

    The record is written first (a worker that claims the task at once then overwrites it
    with ``running``) and restored if the broker refuses. Raises ``ValueError`` when the
    task is not dead-lettered (or a live task holds its id) or the broker cannot requeue.
    """
    broker = _queue_broker(app)
    if broker is None:
        raise ValueError(f"{type(app.broker).__name__} keeps no dead letters")
    before = await app.backend.get(task_id)
    if before is not None:
        await store_and_publish(app.backend, event_bus, _pending_again(before))
    try:
        moved = await broker.requeue_dead(task_id)
    except NotImplementedError:
        moved = None
    except BaseException:
        if before is not None:
            await store_and_publish(app.backend, event_bus, before)
        raise
    if moved:
        return
    if before is not None:
        await store_and_publish(app.backend, event_bus, before)
    if moved is None:
        raise ValueError(f"{type(broker).__name__} cannot requeue dead letters")
    raise ValueError(
        f"task '{task_id}' is not dead-lettered (or a queued or running task has its id)"
    )


async def delete(app: Flowrra, task_id: str) -> bool:
    """Drop the dead letter of ``task_id``; False if there is none. The record stays.

    Raises ``ValueError`` for a broker that keeps dead letters but cannot delete them.
    """
    broker = _queue_broker(app)
    if broker is None:
        return False
    try:
        return await broker.delete_dead(task_id)
    except NotImplementedError:
        raise ValueError(f"{type(broker).__name__} cannot delete dead letters") from None


async def purge(app: Flowrra) -> int:
    """Drop every dead letter; how many were dropped. ``ValueError`` as for :func:`delete`."""
    broker = _queue_broker(app)
    if broker is None:
        return 0
    try:
        return await broker.purge_dead()
    except NotImplementedError:
        raise ValueError(f"{type(broker).__name__} cannot purge dead letters") from None


def _detail(detail: QueueDetail) -> dict[str, Any]:
    return {
        "queue": detail.queue,
        "ready": detail.ready,
        "by_priority": {str(priority): count for priority, count in detail.by_priority.items()},
        "delayed": detail.delayed,
        "in_flight": detail.in_flight,
        "dead": detail.dead,
        "oldest_age": detail.oldest_age,
    }


async def queue_details(app: Flowrra) -> list[dict[str, Any]]:
    """Per queue, JSON-ready (``by_priority`` keys are strings, highest priority first).

    ``[]`` for a broker that cannot tell (a minimal one) or cannot be read now (the
    ``queues_error`` of ``get_stats`` says why).
    """
    broker = _queue_broker(app)
    if broker is None:
        return []
    try:
        details = await broker.queue_details()
    except Exception:  # stats report an unreadable broker elsewhere instead of failing
        return []
    return [_detail(detail) for detail in details]
