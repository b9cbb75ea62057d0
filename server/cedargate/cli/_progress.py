"""One redrawn status line on the terminal while a command reads a large file.

Scripts, ``--json`` and CI logs get nothing (standard error is not a terminal there); a
person watching sees how far the command is, at most a few redraws a second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from cedargate.audit.lines import FileProgress

REDRAW_EVERY_S = 0.2


@contextmanager
def terminal_progress(label: str, stream: TextIO | None = None) -> Iterator[FileProgress]:
    """A reporter for ``label``; the line is cleared when the work ends, however it ends."""
    out = stream or sys.stderr
    if not out.isatty():
        yield _silent
        return
    last = [0.0]
    drawn = [False]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < REDRAW_EVERY_S:
            return
        last[0] = now
        share = f"{done * 100 // total}%" if total else f"{done} bytes"
        out.write(f"\r{label}: {share}")
        out.flush()
        drawn[0] = True

    try:
        yield report
    finally:
        if drawn[0]:
            out.write("\r\x1b[K")
            out.flush()


def _silent(done: int, total: int) -> None:
    """Where progress goes when nobody watches."""
