"""Running flowrra's worker on a user's minimal broker (push / pop / size only).

A :class:`~flowrra.brokers.base.BaseBroker` cannot lease, delay or dead-letter, so the
adapter keeps that state in this process: a pump coroutine pops ready tasks from the
user's broker into a local :class:`MemoryBroker`, which the worker claims from; delayed
tasks and retries wait in the local broker until due. The guarantee is therefore weaker:
a task popped from the user's broker, delayed, or waiting for a retry lives only in this
process, and is lost if the process dies (at-most-once). Order follows the user's broker;
priorities apply only among the tasks already pulled in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from flowrra.brokers.base import BaseBroker, BrokerCounts, DeadLetter, Delivery, QueueBroker
from flowrra.brokers.memory import MemoryBroker
from flowrra.task import Task

logger = logging.getLogger("flowrra.brokers")

_PUMP_RETRY_DELAY = 1.0  # seconds before the pump pops again after the user's broker failed


class MinimalBrokerAdapter(QueueBroker):
    """A :class:`QueueBroker` over a user's :class:`BaseBroker`.

    ``prefetch`` bounds how many tasks are pulled from the user's broker ahead of the
    workers (they are at risk while held here, so keep it near the worker's concurrency).
    """

    def __init__(self, inner: BaseBroker, prefetch: int = 16) -> None:
        self.inner = inner
        self._local = MemoryBroker(max_size=prefetch)
        self._pump: asyncio.Task[None] | None = None

    def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._pump_loop(), name="flowrra-broker-pump")

    async def _pump_loop(self) -> None:
        while True:
            try:
                task = await self.inner.pop(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("popping from %s failed; retrying", type(self.inner).__name__)
                await asyncio.sleep(_PUMP_RETRY_DELAY)
                continue
            if task is not None:
                task.eta = None
                await self._local.enqueue(task)

    async def enqueue(self, task: Task) -> bool:
        """Push a ready task to the user's broker; a delayed one waits here until due."""
        if task.eta is not None and task.eta > time.time():
            return await self._local.enqueue(task)
        await self.inner.push(task)
        return True

    async def claim(self, lanes: Sequence[str]) -> Delivery:
        """Claim from the tasks pulled in (starting the pump on first use)."""
        self._ensure_pump()
        return await self._local.claim(lanes)

    def claim_nowait(self, lanes: Sequence[str]) -> Delivery | None:
        """Claim a task already pulled in, or None."""
        self._ensure_pump()
        return self._local.claim_nowait(lanes)

    async def ack(self, delivery: Delivery) -> bool:
        """Done."""
        return await self._local.ack(delivery)

    async def retry(self, delivery: Delivery, delay: float) -> bool:
        """The retry waits in this process, then runs here."""
        return await self._local.retry(delivery, delay)

    async def release(self, delivery: Delivery) -> bool:
        """Hand the task back to the user's broker (shutdown, or its process died)."""
        if not await self._local.ack(delivery):
            return False
        await self.inner.push(delivery.task)
        return True

    async def bury(self, delivery: Delivery, reason: str) -> bool:
        """Dead-letter in this process."""
        return await self._local.bury(delivery, reason)

    async def cancel(self, task_id: str) -> Task | None:
        """Cancel a task held here (delayed, retrying or pulled in); the user's broker
        has no way to remove a task it holds."""
        return await self._local.cancel(task_id)

    async def counts(self) -> BrokerCounts:
        """Local sizes, with the user's queue counted as ready."""
        local = self._local.counts_now()
        waiting = await self.inner.size()
        return BrokerCounts(local.ready + waiting, local.delayed, local.in_flight, local.dead)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Tasks dead-lettered in this process."""
        return await self._local.dead_letters(limit)

    async def requeue_dead(self, task_id: str) -> bool:
        """Put a task dead-lettered in this process back in line (it runs here)."""
        return await self._local.requeue_dead(task_id)

    async def delete_dead(self, task_id: str) -> bool:
        """Drop a task dead-lettered in this process."""
        return await self._local.delete_dead(task_id)

    async def purge_dead(self) -> int:
        """Drop every task dead-lettered in this process."""
        return await self._local.purge_dead()

    async def wait_idle(self) -> None:
        """Wait until nothing is held here and the user's broker reports size 0.

        The user's broker cannot notify, so its size is checked every 50 ms while the local
        state is idle.
        """
        while True:
            await self._local.wait_idle()
            if await self.inner.size() == 0 and self._local.is_idle():
                return
            await asyncio.sleep(0.05)

    async def pop(self, timeout: float | None = None) -> Task | None:
        """Pop straight from the user's broker (outside the worker's claims)."""
        return await self.inner.pop(timeout)

    async def size(self) -> int:
        """The user's queue size plus the ready tasks pulled in."""
        return (await self.counts()).ready

    async def stop_pump(self) -> None:
        """Stop pulling from the user's broker (tasks already pulled in stay held here)."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None

    async def close(self) -> None:
        """Stop the pump and close the user's broker."""
        await self.stop_pump()
        await self._local.close()
        await self.inner.close()
