"""A tour of flowrra on its embedded defaults: no Redis, no database.

Run it with ``python examples/quickstart.py``. It queues IO tasks, a CPU task that runs in
a child process, a task that fails twice and succeeds on its third attempt, and tasks of
different priorities, then prints what happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time

from flowrra import Config, ExecutorConfig, Flowrra, TaskStatus

app = Flowrra(Config(executor=ExecutorConfig(io_workers=8, cpu_workers=2)))


@app.task
async def fetch_page(url: str) -> dict[str, object]:
    """Pretend to fetch a page: an IO task that waits on the network."""
    await asyncio.sleep(random.uniform(0.05, 0.2))
    return {"url": url, "status": 200, "bytes": random.randint(1_000, 50_000)}


@app.task(cpu_bound=True)
def hash_rounds(seed: str, rounds: int) -> str:
    """A CPU task: runs in a child process, so it does not block the event loop."""
    digest = seed.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


ATTEMPTS: dict[str, int] = {}


@app.task(max_retries=3, retry_delay=0.2)
async def flaky_payment(order_id: str) -> str:
    """Fails twice, then succeeds: retried after 0.2 s, then 0.4 s."""
    ATTEMPTS[order_id] = ATTEMPTS.get(order_id, 0) + 1
    if ATTEMPTS[order_id] < 3:
        raise ConnectionError(f"payment gateway busy (attempt {ATTEMPTS[order_id]})")
    return f"order {order_id} paid"


RUN_ORDER: list[str] = []


@app.task
async def notify(label: str) -> str:
    RUN_ORDER.append(label)
    return label


async def main() -> None:
    started = time.perf_counter()
    async with app:
        pages = [await fetch_page.submit(f"https://example.com/{n}") for n in range(5)]
        digest = await hash_rounds.submit("flowrra", 200_000)
        payment = await flaky_payment.submit("A-1001")

        # Priorities: all three are queued before a worker reaches them; highest runs first.
        labels = [("newsletter", 0), ("password reset", 10), ("weekly report", -5)]
        for label, priority in labels:
            await notify.options(priority=priority).submit(label)

        await app.run_until_idle(timeout=30)

        print("IO tasks:")
        for task_id in pages:
            result = await app.wait_for_result(task_id)
            print(f"  {result.result}")
        cpu = await app.wait_for_result(digest)
        print(f"CPU task: sha256^200000('flowrra') starts with {cpu.result}")
        paid = await app.wait_for_result(payment)
        print(f"Retrying task: {paid.result!r} after {paid.retries} retries ({paid.status})")
        print(f"Priorities: ran in the order {RUN_ORDER}")
        assert paid.status == TaskStatus.SUCCESS
    print(f"Done in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
