"""An app for the ``flowrra scheduler`` command tests: appends one line per run to a file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowrra import Flowrra

app = Flowrra()
OUTPUT = Path(os.environ.get("FLOWRRA_TEST_OUTPUT", "runs.txt"))


@app.task
async def record_run(label: str) -> None:
    await asyncio.to_thread(_append, label)


def _append(label: str) -> None:
    with OUTPUT.open("a") as handle:
        handle.write(label + "\n")
