"""An app on the in-process memory broker, which ``flowrra worker`` must refuse."""

from __future__ import annotations

from flowrra import Flowrra

app = Flowrra()


@app.task
async def noop() -> None:
    """Does nothing."""
