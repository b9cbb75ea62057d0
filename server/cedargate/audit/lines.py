"""Reading an audit file line by line, telling a watcher how far into the file it is.

``audit verify``, ``audit query`` and ``audit export`` read whole logs, which grow large; the
CLI draws their progress on a terminal (``cli/_progress.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

FileProgress = Callable[[int, int], None]
"""``(bytes read, file size)``."""

PROGRESS_EVERY_LINES: Final = 4096


def numbered_lines(path: Path, progress: FileProgress | None = None) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, offset where the line starts, raw line)`` for every line of ``path``.

    ``progress`` hears how far the read is every ``PROGRESS_EVERY_LINES`` lines.
    """
    offset = 0
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            if progress is not None and number % PROGRESS_EVERY_LINES == 0:
                progress(offset, size)
            yield number, start, raw
