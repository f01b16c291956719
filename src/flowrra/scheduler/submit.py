"""The callable a scheduler submits each due run through."""

from __future__ import annotations

from typing import Any, Protocol


class SubmitCallback(Protocol):
    """Queues one scheduled run; returns the task id.

    The scheduler passes a ``task_id`` derived from (schedule id, nominal fire time). An
    implementation must treat a ``task_id`` it already knows as done and return it without
    queueing again: a run may be submitted a second time after a scheduler crashed between
    submitting it and recording that it did. Raising makes the scheduler retry the run.
    """

    async def __call__(
        self,
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        task_id: str,
        priority: int,
        max_retries: int,
        retry_delay: float,
    ) -> str: ...
