"""The stdio wire's input, read so that a stopping server is never held up by a blocked read.

The SDK's ``stdio_server`` reads stdin with a worker thread; cancellation waits for that
thread, so a server whose client keeps the pipe open could not be stopped by Ctrl-C or
SIGTERM. Here the wait for input happens on the event loop (readiness, then one ``read``),
which cancellation interrupts at once. fd 0 points at the null device while serving, as
with the SDK's own claim: handlers and the processes they start read EOF, never the wire.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Final, TextIO

import anyio
import anyio.to_thread

_CHUNK: Final = 1 << 16


class WireInput:
    """Lines of the MCP wire from a private descriptor; iterated by the SDK's stdin reader."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pollable = True
        self._pending = bytearray()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[: end + 1])
                del self._pending[: end + 1]
                yield line.decode("utf-8", errors="replace")
                continue
            chunk = await self._read()
            if not chunk:
                break
            self._pending += chunk
        if self._pending:
            yield bytes(self._pending).decode("utf-8", errors="replace")
            self._pending.clear()

    async def _read(self) -> bytes:
        if self._pollable:
            try:
                await anyio.wait_readable(self._fd)
            except OSError:
                # A regular file (``serve < requests.jsonl``) cannot be polled; its reads never block.
                self._pollable = False
            else:
                return os.read(self._fd, _CHUNK)
        return await anyio.to_thread.run_sync(os.read, self._fd, _CHUNK)


@asynccontextmanager
async def wire_input() -> AsyncIterator[WireInput | None]:
    """The wire's input while serving, or ``None`` when stdin is not fd 0 (the SDK's own reader then)."""
    if not _is_fd_zero(sys.stdin):
        yield None
        return
    with _claimed_stdin() as private_fd:
        yield WireInput(private_fd)


@contextmanager
def _claimed_stdin() -> Iterator[int]:
    """A private duplicate of fd 0, with fd 0 on the null device until the block ends."""
    private_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null_fd, 0)
    finally:
        os.close(null_fd)
    try:
        yield private_fd
    finally:
        os.dup2(private_fd, 0)
        os.close(private_fd)


def _is_fd_zero(stream: TextIO | None) -> bool:
    if stream is None:  # started without a stdin at all
        return False
    try:
        return stream.fileno() == 0
    except (OSError, ValueError):  # a replaced or closed sys.stdin
        return False
