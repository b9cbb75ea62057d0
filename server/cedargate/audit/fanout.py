"""The primary audit log and its secondary sinks, written in one ``append``.

The primary (the JSONL file) is fail-closed: if it cannot take the event, the call does not
run or its result is withheld. Secondary sinks (CloudWatch Logs, OpenTelemetry, the store's
``audit_events`` table) are fed from a queue by one worker thread each, so a slow or failing
sink never blocks a call; a failed delivery is retried with backoff, then kept and retried
with the next event (or after ``idle_retry`` seconds when none comes), and reported in the
log and in ``status()``. An event is never dropped
silently: the primary has it, and a secondary either delivers it or says it has not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from cedargate.audit.event import AuditEvent, WrittenEvent
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord

logger = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Events a failing sink keeps for later; past this the oldest are counted as lost and reported."""


class SecondarySink(Protocol):
    """A place audit events are copied to; ``emit`` raises when the event did not get there."""

    name: str

    def emit(self, events: Sequence[AuditEvent]) -> None: ...

    def close(self) -> None: ...


class SinkStatus(BaseModel):
    name: str
    delivered: int = 0
    pending: int = 0
    failures: int = 0
    lost: int = 0
    last_error: str | None = None


class _Worker:
    """One sink's queue, worker thread, retry and backlog."""

    def __init__(self, sink: SecondarySink, retries: int, backoff: float, idle_retry: float) -> None:
        self.sink = sink
        self.status = SinkStatus(name=sink.name)
        self._retries = retries
        self._backoff = backoff
        self._idle_retry = idle_retry
        self._queue: queue.Queue[WrittenEvent | None] = queue.Queue()
        self._pending: deque[AuditEvent] = deque()
        self._thread = threading.Thread(target=self._run, name=f"audit-sink-{sink.name}", daemon=True)
        self._thread.start()

    def put(self, written: WrittenEvent) -> None:
        self._queue.put(written)

    def flush(self) -> None:
        self._queue.join()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self.sink.close()

    def _run(self) -> None:
        while True:
            try:
                # A backlog is retried when no event comes to carry it: a quiet server still catches up.
                written = self._queue.get(timeout=self._idle_retry if self._pending else None)
            except queue.Empty:
                self._deliver()
                continue
            try:
                if written is None:
                    if self._pending:
                        self._deliver()
                    return
                if self._take(written):
                    self._deliver()
            finally:
                self._queue.task_done()

    def _take(self, written: WrittenEvent) -> bool:
        """Keep the event for the sink; ``False`` when its record cannot be read back (counted as lost)."""
        try:
            event = written.event  # the model is built here, off the call's path
        except Exception:  # boundary: one unreadable record must not stop this sink's thread
            self.status.lost += 1
            logger.exception(
                "audit sink %s: event %s could not be read back from its record; lost from this sink "
                "(the primary log has its line)",
                self.sink.name,
                written.event_id,
            )
            return False
        self._pending.append(event)
        if len(self._pending) > MAX_PENDING:
            self._pending.popleft()
            self.status.lost += 1
            logger.error("audit sink %s: backlog full, an event was lost from this sink", self.sink.name)
        return True

    def _deliver(self) -> None:
        batch = list(self._pending)
        for attempt in range(self._retries):
            try:
                self.sink.emit(batch)
            except Exception as exc:  # boundary: any sink failure is retried and reported, never raised into a call
                self.status.failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                if attempt + 1 < self._retries:
                    time.sleep(self._backoff * 2**attempt)
                continue
            self._pending.clear()
            self.status.delivered += len(batch)
            self.status.pending = 0
            self.status.last_error = None
            return
        self.status.pending = len(self._pending)
        logger.error(
            "audit sink %s: %d events not delivered after %d attempts (%s); kept and retried with the next event "
            "or when the sink has been idle a while",
            self.sink.name,
            len(batch),
            self._retries,
            self.status.last_error,
        )


class FanoutAudit:
    """The ``AuditSink`` the pipeline writes to: the primary log first, then every secondary."""

    def __init__(
        self,
        primary: JsonlAuditLog,
        secondaries: Sequence[SecondarySink] = (),
        *,
        retries: int = 3,
        backoff: float = 0.2,
        idle_retry: float = 30.0,
    ) -> None:
        self.primary = primary
        self._workers = [_Worker(sink, retries, backoff, idle_retry) for sink in secondaries]

    @property
    def path(self) -> Path:
        """The primary log's file."""
        return self.primary.path

    def ready(self) -> None:
        self.primary.ready()

    def append(self, record: EventRecord) -> WrittenEvent:
        written = self.primary.append(record)  # fail closed: raises before any secondary sees the event
        for worker in self._workers:
            worker.put(written)
        return written

    def flush(self) -> None:
        """Wait until every secondary has tried every event it was given."""
        for worker in self._workers:
            worker.flush()

    def status(self) -> list[SinkStatus]:
        return [worker.status.model_copy() for worker in self._workers]

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self.primary.close()
