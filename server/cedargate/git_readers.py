"""Long-lived ``git cat-file`` readers, reused by later calls on the same repository.

Starting git costs milliseconds, more than all the governance around a read. A reader
answers any number of questions, and git resolves every name afresh (loose refs are read
again, a changed ``packed-refs`` is reloaded, new packs are looked for on a miss), so a
reused reader sees commits and ref moves made since it started. A reader serves one call at
a time and is stopped if a use outlasts a minute. Up to 32 idle ones are kept (a burst of
concurrent sessions reuses them rather than starting git for most of its reads), the least
recently used going first, and each is stopped after a minute unused. One that lost its
place in git's answers, outlived its uses, or whose repository directory was replaced (a
re-clone at the same path) is never reused.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cedargate.git import ObjectReader

logger = logging.getLogger(__name__)

_KEEP_IDLE = 32
_MAX_USES = 1000
_TIMEOUT_S = 60.0
_IDLE_S = 60.0

_Identity = tuple[tuple[int, int], ...]


class _Kept:
    def __init__(self, repo: Path, identity: _Identity) -> None:
        self.repo = repo
        self.identity = identity
        self.reader = ObjectReader(repo)
        self.uses = 0
        self.idle_since = 0.0


class _Watchdog:
    """One thread that stops a reader still lent out past its deadline (a stuck disk, say).

    A timer thread per use would cost more than the read; this one looks every ``tick``
    seconds, so a stuck reader is stopped between ``timeout`` and ``timeout + tick`` after
    it was lent, and lending or returning one is a dictionary update. Each tick also calls
    ``on_tick`` (the pool stops readers idle too long).
    """

    def __init__(self, timeout_s: float, tick_s: float, on_tick: Callable[[float], None]) -> None:
        self._timeout_s = timeout_s
        self._tick_s = tick_s
        self._on_tick = on_tick
        self._lock = threading.Lock()
        self._deadlines: dict[ObjectReader, float] = {}
        self._thread: threading.Thread | None = None

    def arm(self, reader: ObjectReader) -> None:
        with self._lock:
            self._deadlines[reader] = time.monotonic() + self._timeout_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="git-reader-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, reader: ObjectReader) -> None:
        with self._lock:
            self._deadlines.pop(reader, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._tick_s)
            now = time.monotonic()
            with self._lock:
                overdue = [reader for reader, deadline in self._deadlines.items() if deadline <= now]
                for reader in overdue:
                    del self._deadlines[reader]
            for reader in overdue:
                reader.kill()
            try:
                self._on_tick(now)
            except Exception:  # boundary: this thread must keep enforcing deadlines whatever a tick meets
                logger.exception("stopping unused git readers failed; tried again next tick")


class ObjectReaderPool:
    """Idle readers by repository; ``reader(repo)`` lends one (started if none is idle)."""

    def __init__(
        self,
        keep_idle: int = _KEEP_IDLE,
        max_uses: int = _MAX_USES,
        timeout_s: float = _TIMEOUT_S,
        tick_s: float = 5.0,
        idle_s: float = _IDLE_S,
    ) -> None:
        self._keep_idle = keep_idle
        self._max_uses = max_uses
        self._idle_s = idle_s
        self._watchdog = _Watchdog(timeout_s, tick_s, self._stop_unused)
        self._lock = threading.Lock()
        self._idle: list[_Kept] = []
        """Most recently returned last."""

    @contextmanager
    def reader(self, repo: Path) -> Iterator[ObjectReader]:
        identity = _identity(repo)
        kept = self._take(repo, identity) or _Kept(repo, identity)
        kept.uses += 1
        self._watchdog.arm(kept.reader)
        try:
            yield kept.reader
        finally:
            self._watchdog.disarm(kept.reader)
            self._give_back(kept)

    def close(self) -> None:
        """Stop every idle reader (readers lent out stop when given back)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for kept in idle:
            kept.reader.close()

    def _take(self, repo: Path, identity: _Identity) -> _Kept | None:
        stale: list[_Kept] = []
        found = None
        with self._lock:
            for index in range(len(self._idle) - 1, -1, -1):
                kept = self._idle[index]
                if kept.repo == repo:
                    del self._idle[index]
                    if kept.identity == identity and kept.reader.usable:
                        found = kept
                        break
                    stale.append(kept)
        for kept in stale:
            kept.reader.close()
        return found

    def _give_back(self, kept: _Kept) -> None:
        if not kept.reader.usable or kept.uses >= self._max_uses:
            kept.reader.close()
            return
        kept.idle_since = time.monotonic()
        with self._lock:
            self._idle.append(kept)
            evicted = self._idle[: -self._keep_idle] if len(self._idle) > self._keep_idle else []
            del self._idle[: len(evicted)]
        for old in evicted:
            old.reader.close()

    def _stop_unused(self, now: float) -> None:
        """Stop the readers idle for longer than ``idle_s`` (the oldest are first in the list)."""
        with self._lock:
            unused = 0
            while unused < len(self._idle) and now - self._idle[unused].idle_since > self._idle_s:
                unused += 1
            stopped, self._idle = self._idle[:unused], self._idle[unused:]
        for kept in stopped:
            kept.reader.close()


def _identity(repo: Path) -> _Identity:
    """The repository directory and its ``.git`` as (device, inode): a replaced one differs."""
    found = []
    for path in (repo, repo / ".git"):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        found.append((stat.st_dev, stat.st_ino))
    return tuple(found)


OBJECT_READERS = ObjectReaderPool()
"""The process's readers (handlers are plain functions); stopped at exit, as git would on its own."""
atexit.register(OBJECT_READERS.close)
