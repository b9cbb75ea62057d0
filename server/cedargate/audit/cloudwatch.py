"""A secondary sink that copies audit events to CloudWatch Logs, one log event per audit event.

PutLogEvents refuses a whole request that breaks one of its limits, and a refused request
would be retried forever, holding back every event behind it. So requests are cut by count,
by bytes and by time span, and an event too large for a log event on its own is sent as a
stub naming it (the primary log holds it whole).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from cedargate.audit.event import AuditEvent

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 1000
"""Log events per request; PutLogEvents takes up to 10,000."""

MAX_REQUEST_BYTES: Final = 1_048_576
"""PutLogEvents' request limit: the UTF-8 bytes of every message plus ``EVENT_OVERHEAD`` each."""

EVENT_OVERHEAD: Final = 26

MAX_EVENT_BYTES: Final = 262_144
"""CloudWatch's limit for one log event (256 KiB, overhead included); a larger event is sent as a stub."""

MAX_SPAN: Final = timedelta(hours=24)
"""A request's log events may not span more than 24 hours."""


def _message(event: AuditEvent) -> str:
    return json.dumps(event.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)


def _stub(event: AuditEvent, size: int) -> str:
    """What is sent for an event CloudWatch cannot take: enough to find it in the primary log."""
    return json.dumps(
        {
            "event_id": event.event_id,
            "time": event.time,
            "tool": event.tool[:256],  # an agent can choose the tool name
            "outcome": event.outcome,
            "hash": event.hash,
            "truncated": True,
            "note": f"the event is {size} bytes, over CloudWatch's {MAX_EVENT_BYTES}-byte limit for a log event; "
            "the full event is in the primary audit log",
        },
        sort_keys=True,
        ensure_ascii=False,
    )


def _log_event(event: AuditEvent) -> tuple[datetime, dict[str, Any], int]:
    """The event's time, its PutLogEvents entry and the bytes it counts against the request limit."""
    when = datetime.fromisoformat(event.time)
    message = _message(event)
    size = len(message.encode()) + EVENT_OVERHEAD
    if size > MAX_EVENT_BYTES:
        message = _stub(event, size)
        size = len(message.encode()) + EVENT_OVERHEAD
    return when, {"timestamp": int(when.timestamp() * 1000), "message": message}, size


class CloudWatchSink:
    """Writes to ``log_group``/``log_stream`` with the client it is given, creating both on first use."""

    name = "cloudwatch"

    def __init__(self, client: Any, log_group: str, log_stream: str) -> None:
        self._client = client
        self._group = log_group
        self._stream = log_stream
        self._ready = False

    def emit(self, events: Sequence[AuditEvent]) -> int:
        """Send the longest leading run of ``events`` one request allows; return how many it held.

        One request per call, so a failure never leaves the fan-out unsure which events arrived:
        it drops exactly the returned count from its backlog and calls again for the rest.
        """
        if not events:
            return 0
        if not self._ready:
            self._ensure_stream()
        chunk: list[tuple[datetime, dict[str, Any]]] = []
        total = 0
        first = last = None
        for event in events[:MAX_BATCH]:
            when, entry, size = _log_event(event)
            lo, hi = (when, when) if first is None or last is None else (min(first, when), max(last, when))
            if chunk and (total + size > MAX_REQUEST_BYTES or hi - lo > MAX_SPAN):
                break
            chunk.append((when, entry))
            total += size
            first, last = lo, hi
        log_events = [entry for _, entry in sorted(chunk, key=lambda c: c[0])]  # chronological within a request
        try:
            response = self._client.put_log_events(
                logGroupName=self._group, logStreamName=self._stream, logEvents=log_events
            )
        except self._client.exceptions.ResourceNotFoundException:
            self._ready = False  # the group or stream was deleted: create them again on the next attempt
            raise
        rejected = response.get("rejectedLogEventsInfo") if isinstance(response, dict) else None
        if rejected:
            logger.error(
                "audit sink cloudwatch: CloudWatch did not store some of %d log events (%s: too old, too new or "
                "past the group's retention); the primary audit log has them",
                len(log_events),
                rejected,
            )
        return len(chunk)

    def close(self) -> None:
        """Nothing held open: the client's connections close with it."""

    def _ensure_stream(self) -> None:
        exists = self._client.exceptions.ResourceAlreadyExistsException
        with contextlib.suppress(exists):
            self._client.create_log_group(logGroupName=self._group)
        with contextlib.suppress(exists):
            self._client.create_log_stream(logGroupName=self._group, logStreamName=self._stream)
        self._ready = True
