"""Small asyncio helpers shared by the worker and the Redis parts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

CANCEL_RECHECK = 0.25  # s: how long a cancelled task gets before it is cancelled again


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again any that swallowed it.

    On CPython 3.11 a cancellation that arrives just as an ``asyncio.timeout`` inside the
    task expires can be turned into a ``TimeoutError`` and lost; a loop would then run on
    and a plain ``gather`` would wait forever. Exceptions of the tasks are not raised.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_RECHECK)
    await asyncio.gather(*tasks, return_exceptions=True)
