"""Local claimers of the Redis broker: one fetcher per set of lanes feeds them all."""

from __future__ import annotations

import asyncio
from collections import deque

from flowrra.brokers.base import Delivery
from flowrra.redis_keys import split_lane


class Claimer:
    """Local claimers of one set of lanes, the spare deliveries, and their fetcher."""

    __slots__ = ("buffer", "groups", "lanes", "name", "waiters")

    def __init__(self, lanes: tuple[str, ...]) -> None:
        self.lanes = lanes
        self.name = "claim:" + ",".join(lanes)
        self.groups: list[tuple[str, list[str]]] = []
        for lane in lanes:
            queue, executor = split_lane(lane)
            if self.groups and self.groups[-1][0] == queue:
                self.groups[-1][1].append(executor)
            else:
                self.groups.append((queue, [executor]))
        self.buffer: deque[Delivery] = deque()
        self.waiters: deque[asyncio.Future[Delivery]] = deque()

    def hand_out(self) -> None:
        """Give spare deliveries to waiting claimers, oldest first."""
        buffer, waiters = self.buffer, self.waiters
        while buffer and waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(buffer.popleft())

    def prune(self) -> None:
        """Forget claimers that stopped waiting (cancelled)."""
        waiters = self.waiters
        while waiters and waiters[0].done():
            waiters.popleft()
