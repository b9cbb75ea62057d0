"""An exclusive ``flock`` on an open file, for work one process on this host may do at a time."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


@contextmanager
def exclusively(file: IO[bytes]) -> Iterator[None]:
    """Hold ``file``'s exclusive ``flock`` for the block (other processes' ``flock`` calls wait)."""
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
