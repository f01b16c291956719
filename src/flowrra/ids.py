"""Task ids: random version-4 UUID strings, made cheaply.

``str(uuid.uuid4())`` costs several microseconds per id (a system call, a ``UUID`` object
and Python-level formatting), which shows at 100,000 submits a second. Here ids are made
512 at a time with C-level bulk operations on one block of OS randomness: the version and
variant bits are set with ``bytes.translate`` over strided slices, the block is
hex-encoded once, and the dashes are laid in by strided slice assignment. Each id is the
canonical RFC 4122 version-4 form with 122 random bits, exactly like ``uuid.uuid4()``.
"""

from __future__ import annotations

import os
import secrets
import socket

_BATCH = 512
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # high nibble of byte 6 := 4
_VARIANT_RFC = bytes((b & 0x3F) | 0x80 for b in range(256))  # top bits of byte 8 := 10
# positions of the 32 hex digits inside the 36-character form, plus the 4 dashes
_DIGIT_AT = [i for i in range(36) if i not in (8, 13, 18, 23)]
_STRIDE = 37  # 36 characters and a space between ids

_ready: list[str] = []


def _refill() -> None:
    raw = bytearray(os.urandom(16 * _BATCH))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC)
    digits = raw.hex().encode("ascii")
    out = bytearray(b" " * (_STRIDE * _BATCH))
    for digit, position in enumerate(_DIGIT_AT):
        out[position::_STRIDE] = digits[digit::32]
    for position in (8, 13, 18, 23):
        out[position::_STRIDE] = b"-" * _BATCH
    _ready.extend(out.decode("ascii").split())


def new_task_id() -> str:
    """A fresh random version-4 UUID string (``xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx``)."""
    if not _ready:
        _refill()
    return _ready.pop()


if hasattr(os, "register_at_fork"):
    # a forked child must not hand out the ids its parent will also hand out
    os.register_at_fork(after_in_child=_ready.clear)


def new_worker_id() -> str:
    """A worker's id, unique across hosts and restarts: ``<hostname>-<pid>-<6 hex digits>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
