"""Asking the audit file, before a handler runs, whether it could take the call's event now.

The event of a call is written after its handler ran; if the write then fails, a change may
have happened that the trail does not show. This probe closes that window for the faults
that can be seen in advance: a file turned read-only or immutable, a device that refuses
writes (a zero-byte write reports it), and a filesystem with almost no space left.
"""

from __future__ import annotations

import os
from typing import Final

MIN_FREE_BYTES: Final = 1 << 20
"""Below this much free space the next event might not fit: calls are refused."""


def unwritable_reason(fd: int) -> str | None:
    """Why the file behind ``fd`` cannot take another line now, or ``None`` when it can."""
    try:
        os.write(fd, b"")
        stats = os.fstatvfs(fd)
    except OSError as exc:
        return exc.strerror or str(exc)
    if stats.f_blocks and stats.f_bfree * stats.f_frsize < MIN_FREE_BYTES:
        return f"less than {MIN_FREE_BYTES} bytes free on its filesystem"
    return None
