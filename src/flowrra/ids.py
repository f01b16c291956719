"""Task ids: random version-4 UUID strings, made cheaply.

``str(uuid.uuid4())`` costs several microseconds per id (a system call and a ``UUID``
object), which shows at 100,000 submits a second. Here random bytes are read from the OS
in blocks and formatted 512 ids at a time; each id is the canonical RFC 4122 version-4
form with 122 random bits, exactly like ``uuid.uuid4()``.
"""

from __future__ import annotations

import os

_BATCH = 512
# the variant nibble is 10xx in binary: 8, 9, a or b, chosen by two random bits
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}

_ready: list[str] = []


def _refill() -> None:
    h = os.urandom(16 * _BATCH).hex()
    _ready.extend(
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * _BATCH, 32)
    )


def new_task_id() -> str:
    """A fresh random version-4 UUID string (``xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx``)."""
    if not _ready:
        _refill()
    return _ready.pop()


if hasattr(os, "register_at_fork"):
    # a forked child must not hand out the ids its parent will also hand out
    os.register_at_fork(after_in_child=_ready.clear)
