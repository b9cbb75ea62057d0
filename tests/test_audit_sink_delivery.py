"""Secondary sink delivery: CloudWatch's request limits, partial progress, a deleted log group, shutdown.

Moto does not enforce PutLogEvents' limits, so ``_AwsLimits`` applies the documented ones as
the service does: the whole request is refused.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.conftest import sample_event

from cedargate.audit import fanout
from cedargate.audit.cloudwatch import CloudWatchSink
from cedargate.audit.event import AuditEvent
from cedargate.audit.fanout import FanoutAudit, SinkStatus
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.errors import AuditWriteError

REQUEST_LIMIT = 1_048_576
EVENT_LIMIT = 262_144


class _AwsLimits:
    """A logs client passing through to moto that refuses what CloudWatch refuses, and fails chosen calls."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.exceptions = real.exceptions
        self.requests: list[list[dict[str, Any]]] = []
        self.fail_calls: set[int] = set()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_log_events(self, **kw: Any) -> Any:
        self.calls += 1
        entries = kw["logEvents"]
        size = sum(len(e["message"].encode()) + 26 for e in entries)
        times = [e["timestamp"] for e in entries]
        bad = (
            f"Upload too large: {size} bytes" if size > REQUEST_LIMIT
            else "Log event too large" if any(len(e["message"].encode()) + 26 > EVENT_LIMIT for e in entries)
            else "A batch of log events cannot span more than 24 hours" if max(times) - min(times) > 86_400_000
            else "Log events in a single PutLogEvents request must be in chronological order"
            if times != sorted(times) else None
        )  # fmt: skip
        if bad:
            raise self.real.exceptions.InvalidParameterException(
                {"Error": {"Code": "InvalidParameterException", "Message": bad}}, "PutLogEvents"
            )
        if self.calls in self.fail_calls:
            raise ConnectionError(f"simulated throttling on call {self.calls}")
        self.requests.append(entries)
        return self.real.put_log_events(**kw)


@pytest.fixture
def logs() -> Iterator[_AwsLimits]:
    with mock_aws():
        yield _AwsLimits(boto3.client("logs", region_name="us-east-1"))


def _stored(logs: _AwsLimits) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"logGroupName": "/qa", "logStreamName": "s", "startFromHead": True}
    while True:
        page = logs.real.get_log_events(**kw)
        if not page["events"]:
            return out
        out += [json.loads(e["message"]) for e in page["events"]]
        kw["nextToken"] = page["nextForwardToken"]


def _audit(tmp_path: Path, sink: Any, **kw: Any) -> FanoutAudit:
    return FanoutAudit(JsonlAuditLog(tmp_path / "audit.jsonl"), [sink], **{"backoff": 0, **kw})


def test_an_event_too_large_for_cloudwatch_goes_as_a_stub_and_does_not_block_the_rest(
    tmp_path: Path, logs: _AwsLimits
) -> None:
    audit = _audit(tmp_path, CloudWatchSink(logs, "/qa", "s"))
    try:
        audit.append(EventRecord.of(sample_event(0)))
        big = audit.append(EventRecord.of(sample_event(1, arguments={"x": ["A" * 2000] * 600})))  # ~1.2 MB
        audit.append(EventRecord.of(sample_event(2)))
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    stored = _stored(logs)
    assert [e["event_id"] for e in stored] == ["e0", "e1", "e2"]
    stub = stored[1]
    assert stub["truncated"] is True and stub["hash"] == big.hash and stub["tool"] == "repo_read_file"
    assert stub["outcome"] == "succeeded" and stub["time"] == "2026-11-26T00:00:00+00:00"
    assert "primary audit log" in stub["note"] and "arguments" not in stub
    assert status.delivered == 3 and status.failures == 0 and status.pending == 0


def _after_an_outage(tmp_path: Path, logs: _AwsLimits, events: list[AuditEvent]) -> tuple[list[str], SinkStatus]:
    """Deliver ``events`` from one backlog: the sink is down while they come, then one more event carries them."""
    audit = _audit(tmp_path, CloudWatchSink(logs, "/qa", "s"), retries=1, idle_retry=3600)
    try:
        logs.fail_calls = set(range(1, 10_000))
        for event in events[:-1]:
            audit.append(EventRecord.of(event))
        audit.flush()
        logs.fail_calls = set()
        audit.append(EventRecord.of(events[-1]))
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    return [e["event_id"] for e in _stored(logs)], status


def test_requests_are_cut_by_bytes(tmp_path: Path, logs: _AwsLimits) -> None:
    events = [sample_event(n, arguments={"content": "x" * 1600}) for n in range(1000)]  # ~1.9 MB in all
    ids, status = _after_an_outage(tmp_path, logs, events)
    assert ids == [e.event_id for e in events]
    assert status.delivered == 1000 and status.pending == 0 and status.lost == 0


def test_requests_never_span_more_than_24_hours(tmp_path: Path, logs: _AwsLimits) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    events = [sample_event(n, time=(now - timedelta(hours=36 * (3 - n))).isoformat()) for n in range(4)]
    ids, status = _after_an_outage(tmp_path, logs, events)
    assert ids == ["e0", "e1", "e2", "e3"]
    assert status.delivered == 4 and status.pending == 0 and status.lost == 0


def test_a_failed_request_never_resends_what_earlier_requests_delivered(tmp_path: Path, logs: _AwsLimits) -> None:
    sink = CloudWatchSink(logs, "/qa", "s")
    audit = _audit(tmp_path, sink, retries=1, idle_retry=3600)
    try:
        logs.fail_calls = set(range(1, 10_000))  # the sink is down while 1500 events come
        for n in range(1500):
            audit.append(EventRecord.of(sample_event(n)))
        audit.flush()
        assert audit.status()[0].pending == 1500
        logs.fail_calls = {logs.calls + 2}  # back, but the backlog's second request fails once
        audit.append(EventRecord.of(sample_event(1500)))
        audit.flush()
        audit.append(EventRecord.of(sample_event(1501)))
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    ids = [e["event_id"] for e in _stored(logs)]
    assert len(ids) == len(set(ids)) == 1502
    assert status.delivered == 1502 and status.pending == 0


def test_a_deleted_log_group_is_created_again_and_the_backlog_catches_up(tmp_path: Path, logs: _AwsLimits) -> None:
    audit = _audit(tmp_path, CloudWatchSink(logs, "/qa", "s"), retries=3)
    try:
        audit.append(EventRecord.of(sample_event(0)))
        audit.flush()
        logs.real.delete_log_group(logGroupName="/qa")
        for n in range(1, 4):
            audit.append(EventRecord.of(sample_event(n)))
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    assert [e["event_id"] for e in _stored(logs)] == ["e1", "e2", "e3"]  # e0 went with the deleted group
    assert status.delivered == 4 and status.pending == 0 and status.last_error is None


class _Gate:
    """A sink whose deliveries wait for ``open`` (a slow or hung endpoint), then fail or keep the events."""

    name = "gate"

    def __init__(self, *, fail: bool = False) -> None:
        self.open = threading.Event()
        self.fail = fail
        self.received: list[str] = []

    def emit(self, events: Sequence[AuditEvent]) -> None:
        self.open.wait(timeout=30)
        if self.fail:
            raise ConnectionError("collector unreachable")
        self.received.extend(e.event_id for e in events)

    def close(self) -> None:
        pass


def test_pending_counts_events_still_queued(tmp_path: Path) -> None:
    gate = _Gate()
    audit = _audit(tmp_path, gate)
    try:
        for n in range(5):
            audit.append(EventRecord.of(sample_event(n)))
        assert audit.status()[0].pending == 5  # the first is in flight, the rest queued behind it
        gate.open.set()
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    assert status.pending == 0 and status.delivered == 5 and gate.received == [f"e{n}" for n in range(5)]


def _sink_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("audit sink gate")]


def test_what_a_failing_sink_holds_at_stop_is_reported_lost_not_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    gate = _Gate(fail=True)
    gate.open.set()
    audit = _audit(tmp_path, gate, retries=2)
    for n in range(4):
        audit.append(EventRecord.of(sample_event(n)))
    audit.close()
    [status] = audit.status()
    assert status.lost == 4 and status.pending == 0 and status.delivered == 0
    last = _sink_lines(caplog)[-1]
    assert "4 events were not delivered and are lost" in last and "first e0, last e3" in last
    assert "kept" not in last


def test_a_hung_sink_is_abandoned_at_stop_with_its_events_reported_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR)
    monkeypatch.setattr(fanout, "STOP_TIMEOUT", 0.3, raising=False)
    gate = _Gate()
    audit = _audit(tmp_path, gate)
    try:
        for n in range(3):
            audit.append(EventRecord.of(sample_event(n)))
        audit.close()
        [status] = audit.status()
    finally:
        gate.open.set()  # let the abandoned thread end
    assert status.lost == 3 and status.pending == 0
    [line] = _sink_lines(caplog)
    assert "did not finish within 0.3 seconds" in line and "3 events" in line and "first e0, last e2" in line


class _HeldPrimary(JsonlAuditLog):
    """A primary log whose ``append``, once the line is written, waits for ``release`` while ``hold`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hold = False
        self.written = threading.Event()
        self.release = threading.Event()

    def append(self, record: EventRecord) -> Any:
        written = super().append(record)
        if self.hold:
            self.written.set()
            self.release.wait(timeout=30)
        return written


def test_an_event_given_to_a_sink_after_its_last_try_at_stop_is_counted_and_logged_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    gate = _Gate()
    gate.open.set()
    primary = _HeldPrimary(tmp_path / "audit.jsonl")
    audit = FanoutAudit(primary, [gate], backoff=0)
    audit.append(EventRecord.of(sample_event(0)))
    primary.hold = True
    call = threading.Thread(target=audit.append, args=(EventRecord.of(sample_event(1)),))
    call.start()
    assert primary.written.wait(timeout=5)  # e1 is in the primary, not yet given to the sink
    audit.close()
    primary.release.set()
    call.join(timeout=5)
    flush = threading.Thread(target=audit.flush, daemon=True)
    flush.start()
    flush.join(timeout=5)
    [status] = audit.status()
    assert gate.received == ["e0"]
    assert status.delivered == 1 and status.lost == 1 and status.pending == 0
    [line] = _sink_lines(caplog)
    assert "e1" in line and "lost from this sink" in line and "1 such events" in line
    assert not flush.is_alive(), "flush waits for an event no worker will ever try"


def test_appends_racing_close_are_each_delivered_or_counted_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)

    class Slow:
        name = "gate"

        def __init__(self) -> None:
            self.received: list[str] = []

        def emit(self, events: Sequence[AuditEvent]) -> None:
            time.sleep(0.002)
            self.received.extend(e.event_id for e in events)

        def close(self) -> None:
            pass

    for trial in range(10):
        sink = Slow()
        audit = FanoutAudit(JsonlAuditLog(tmp_path / f"audit-{trial}.jsonl"), [sink], backoff=0)
        stop = threading.Event()

        def write(writer: int, audit: FanoutAudit = audit, stop: threading.Event = stop) -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                try:
                    audit.append(EventRecord.of(sample_event(writer * 1_000_000 + n)))
                except AuditWriteError:  # closed: the call is refused, nothing was written
                    return

        writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
        for w in writers:
            w.start()
        time.sleep(0.03)
        audit.close()
        stop.set()
        for w in writers:
            w.join(timeout=10)
        [status] = audit.status()
        primary = [
            json.loads(line)["event_id"] for line in (tmp_path / f"audit-{trial}.jsonl").read_text().splitlines()
        ]
        missing = set(primary) - set(sink.received)
        assert status.pending == 0 and status.lost == len(missing), (trial, status, len(missing))
        assert status.delivered + status.lost == len(primary), (trial, status, len(primary))
