"""The primary audit log and its secondary sinks, written in one ``append``.

The primary (the JSONL file) is fail-closed: if it cannot take the event, the call does not
run or its result is withheld. Secondary sinks (CloudWatch Logs, OpenTelemetry, the store's
``audit_events`` table) are fed by one worker thread each, so a slow or failing sink never
blocks a call; a failed delivery is retried with backoff, then kept and retried with the next
event (or after ``idle_retry`` seconds when none comes), and reported in the log and in
``status()``. When the server stops, each sink gets a last try (at most ``STOP_TIMEOUT``
seconds); what it still holds is counted as lost and logged with its first and last event ids,
so it can be replayed from the primary. The primary stops taking events first, and one that got
past it just before but reaches a sink after that last try is counted and logged as lost at
once. An event is never dropped silently: the primary has
it, and a secondary either delivers it or says it has not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from cedargate.audit.event import AuditEvent, WrittenEvent
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord

logger = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Events a failing sink keeps for later; past this the oldest are counted as lost and reported."""

MAX_EMIT = 1000
"""Events handed to one ``emit``: bounds a sink's request or transaction, whatever the backlog."""

STOP_TIMEOUT = 10.0
"""Seconds a sink gets at shutdown to deliver what it holds before it is counted as lost."""


class SecondarySink(Protocol):
    """A place audit events are copied to.

    ``emit`` raises when none of the events got there; otherwise it returns how many of them,
    from the start, did (``None``: all). A sink that must split a batch reports the part that
    arrived, so the fan-out never sends it again.
    """

    name: str

    def emit(self, events: Sequence[AuditEvent]) -> int | None: ...

    def close(self) -> None: ...


class SinkStatus(BaseModel):
    name: str
    delivered: int = 0
    pending: int = 0
    """Events given to the sink and neither delivered nor lost yet (queued or kept for a retry)."""
    failures: int = 0
    lost: int = 0
    last_error: str | None = None


class _Worker:
    """One sink's inbox, worker thread, retry and backlog.

    One lock guards the inbox, the backlog and the status, so ``pending`` is exact and, when a
    hung sink is abandoned at shutdown, exactly what it never delivered is reported.
    """

    def __init__(self, sink: SecondarySink, retries: int, backoff: float, idle_retry: float) -> None:
        self.sink = sink
        self.status = SinkStatus(name=sink.name)
        self._retries = retries
        self._backoff = backoff
        self._idle_retry = idle_retry
        self._lock = threading.Condition()
        self._inbox: deque[WrittenEvent] = deque()  # given, not yet read back into an event
        self._backlog: deque[AuditEvent] = deque()  # read back, not yet delivered
        self._untried = 0  # given and not yet through a delivery attempt: ``flush`` waits for 0
        self._stopping = False
        self._finished = False  # the final pass at shutdown is done: nothing given after it is delivered
        self._late = 0  # events given after the final pass, counted lost
        self._abandoned = threading.Event()  # set by a stop that gave up on a hung sink
        self._thread = threading.Thread(target=self._run, name=f"audit-sink-{sink.name}", daemon=True)
        self._thread.start()

    def put(self, written: WrittenEvent) -> None:
        with self._lock:
            late = self._finished or self._abandoned.is_set()
            if late:  # no pass will come for it: counted lost now rather than queued for nobody
                self.status.lost += 1
                self._late += 1
                count = self._late
            else:
                self._inbox.append(written)
                self._untried += 1
                self.status.pending += 1
                self._lock.notify_all()
        if late:
            logger.error(
                "audit sink %s: event %s came after the sink's last delivery at shutdown and is lost from this "
                "sink (%d such events so far); the primary audit log has it, replay it from there",
                self.sink.name,
                written.event_id,
                count,
            )

    def snapshot(self) -> SinkStatus:
        with self._lock:
            return self.status.model_copy()

    def flush(self) -> None:
        with self._lock:
            self._lock.wait_for(lambda: self._untried == 0 or self._abandoned.is_set())

    def stop(self) -> None:
        """Deliver what is held, within ``STOP_TIMEOUT``; count and log whatever was not as lost."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout=STOP_TIMEOUT)
        if self._thread.is_alive():  # hung in ``emit``: report what it holds; it changes nothing after this
            with self._lock:
                self._abandoned.set()
                ids = [e.event_id for e in self._backlog] + [w.event_id for w in self._inbox]
                self._lose(len(ids))
                self._lock.notify_all()
            self._report_lost(ids, f"it did not finish within {STOP_TIMEOUT:g} seconds")
        self.sink.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._inbox and not self._stopping:
                    # A backlog is retried when no event comes to carry it: a quiet server still catches up.
                    self._lock.wait(timeout=self._idle_retry if self._backlog else None)
                stopping = self._stopping
            taken = self._take_inbox()
            if taken is None:
                return
            delivered = self._deliver()
            with self._lock:
                if self._abandoned.is_set():
                    return
                self._untried -= taken
                self._lock.notify_all()
                final = stopping and not self._inbox  # the process is exiting: nothing is kept any more
                self._finished = final  # from here ``put`` counts an event lost itself
                held = len(self._backlog)
                lost = [e.event_id for e in self._backlog] if final else []
                if lost:
                    self._backlog.clear()
                    self._lose(len(lost))
            if final:
                self._report_lost(lost, f"the last attempt failed ({self.status.last_error})")
                return
            if delivered is False:
                logger.error(
                    "audit sink %s: %d events not delivered after %d attempts (%s); kept and retried with the "
                    "next event or when the sink has been idle a while",
                    self.sink.name,
                    held,
                    self._retries,
                    self.status.last_error,
                )

    def _take_inbox(self) -> int | None:
        """Move the inbox into the backlog; how many events were taken, ``None`` once abandoned.

        Each event's model is built here, off the call's path and outside the lock; an event
        stays in the inbox until it is in the backlog, so an abandoning ``stop`` sees it.
        """
        taken = 0
        while True:
            with self._lock:
                if self._abandoned.is_set():
                    return None
                if not self._inbox:
                    return taken
                written = self._inbox[0]
            try:
                event: AuditEvent | None = written.event
            except Exception:  # boundary: one unreadable record must not stop this sink's thread
                event = None
                logger.exception(
                    "audit sink %s: event %s could not be read back from its record; lost from this sink "
                    "(the primary log has its line)",
                    self.sink.name,
                    written.event_id,
                )
            overflow = False
            with self._lock:
                if self._abandoned.is_set():
                    return None
                self._inbox.popleft()
                taken += 1
                if event is None:
                    self._lose(1)
                    continue
                self._backlog.append(event)
                if len(self._backlog) > MAX_PENDING:
                    dropped = self._backlog.popleft()
                    self._lose(1)
                    overflow = True
            if overflow:
                logger.error(
                    "audit sink %s: backlog full, event %s was lost from this sink (the primary log has it)",
                    self.sink.name,
                    dropped.event_id,
                )

    def _deliver(self) -> bool | None:
        """Send the backlog, a leading part at a time; ``False`` when an attempt failed ``retries`` times.

        What the sink reports delivered leaves the backlog at once, so a later failure never
        makes it send those events again. ``None`` once abandoned.
        """
        attempt = 0
        while True:
            with self._lock:
                if self._abandoned.is_set():
                    return None
                batch = list(islice(self._backlog, MAX_EMIT))
            if not batch:
                return True
            try:
                count = self.sink.emit(batch)
                if count is not None and not 0 < count <= len(batch):
                    raise RuntimeError(f"the sink reported {count} of {len(batch)} events delivered")
            except Exception as exc:  # boundary: any sink failure is retried and reported, never raised into a call
                with self._lock:
                    if self._abandoned.is_set():
                        return None
                    self.status.failures += 1
                    self.status.last_error = f"{type(exc).__name__}: {exc}"
                attempt += 1
                if attempt >= self._retries:
                    return False
                time.sleep(self._backoff * 2 ** (attempt - 1))
                continue
            done = len(batch) if count is None else count
            with self._lock:
                if self._abandoned.is_set():
                    return None
                for _ in range(done):
                    self._backlog.popleft()
                self.status.delivered += done
                self.status.pending -= done
                self.status.last_error = None
            attempt = 0

    def _lose(self, count: int) -> None:
        """Count ``count`` held events as lost; the caller holds the lock and lets go of them."""
        self.status.lost += count
        self.status.pending -= count

    def _report_lost(self, ids: list[str], why: str) -> None:
        if ids:
            logger.error(
                "audit sink %s: the server is stopping and %s; %d events were not delivered and are lost "
                "from this sink (first %s, last %s); the primary audit log has them, replay them from there",
                self.sink.name,
                why,
                len(ids),
                ids[0],
                ids[-1],
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
        return [worker.snapshot() for worker in self._workers]

    def close(self) -> None:
        """Stop taking events, then give each secondary its last try.

        The primary closes first, so no event gets past it once the workers start their final
        pass; one that got past it just before is delivered by that pass, or counted and logged
        as lost by the worker it comes to too late.
        """
        self.primary.close()
        for worker in self._workers:
            worker.stop()
