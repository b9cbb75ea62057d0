"""A secondary sink that copies audit events to CloudWatch Logs, one log event per audit event."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cedargate.audit.event import AuditEvent

MAX_BATCH = 1000
"""PutLogEvents takes at most 10,000 events and 1 MiB per call; cedargate stays well inside."""


class CloudWatchSink:
    """Writes to ``log_group``/``log_stream`` with the client it is given, creating both on first use."""

    name = "cloudwatch"

    def __init__(self, client: Any, log_group: str, log_stream: str) -> None:
        self._client = client
        self._group = log_group
        self._stream = log_stream
        self._ready = False

    def emit(self, events: Sequence[AuditEvent]) -> None:
        if not self._ready:
            self._ensure_stream()
        ordered = sorted(events, key=lambda e: e.time)  # PutLogEvents wants chronological order
        for start in range(0, len(ordered), MAX_BATCH):
            batch = ordered[start : start + MAX_BATCH]
            self._client.put_log_events(
                logGroupName=self._group,
                logStreamName=self._stream,
                logEvents=[
                    {
                        "timestamp": int(datetime.fromisoformat(e.time).timestamp() * 1000),
                        "message": json.dumps(e.model_dump(mode="json"), sort_keys=True, ensure_ascii=False),
                    }
                    for e in batch
                ],
            )

    def close(self) -> None:
        """Nothing held open: the client's connections close with it."""

    def _ensure_stream(self) -> None:
        exists = self._client.exceptions.ResourceAlreadyExistsException
        with contextlib.suppress(exists):
            self._client.create_log_group(logGroupName=self._group)
        with contextlib.suppress(exists):
            self._client.create_log_stream(logGroupName=self._group, logStreamName=self._stream)
        self._ready = True
