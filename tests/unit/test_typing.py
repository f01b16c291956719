"""Submitting through a task object is checked by mypy against the task's signature."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

PROGRAM = textwrap.dedent(
    """
    from flowrra import Flowrra

    app = Flowrra()

    @app.task(priority=3)
    async def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(cpu_bound=True)
    def shout(text: str) -> str:
        return text.upper()

    async def good() -> None:
        await add.submit(1, y=2)
        await add.options(priority=9, countdown=5).submit(1)
        await shout.submit("hi")
        total: int = await add(1, 2)
        loud: str = shout("x")

    async def bad() -> None:
        await add.submit("one")
        await add.submit(1, z=2)
        await shout.options(priority=1).submit(3)
    """
)


def test_task_submit_is_checked_against_the_signature(tmp_path: Path) -> None:
    source = tmp_path / "uses_tasks.py"
    source.write_text(PROGRAM)
    stdout, _, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    lines = PROGRAM.splitlines()
    flagged = {lines[int(e.split(":")[1]) - 1].strip() for e in errors}
    assert flagged == {
        'await add.submit("one")',
        "await add.submit(1, z=2)",
        "await shout.options(priority=1).submit(3)",
    }, stdout
    assert status == 1
