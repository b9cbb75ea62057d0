"""Audit event ids: random (version 4) UUIDs, written as ``str(uuid.uuid4())`` writes them.

Every call takes one. Building a ``uuid.UUID`` object to print it costs several times the
16 random bytes it holds, so the text is formatted from the bytes directly.
"""

from __future__ import annotations

import os


def new_event_id() -> str:
    """A fresh version-4 UUID in its canonical text form, from the operating system's CSPRNG."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
