"""Secondary audit sinks: CloudWatch Logs (moto sandbox), OpenTelemetry spans, retry and report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import boto3
import pytest
from mcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.conftest import audit_events, sample_event

from cedargate.audit.cloudwatch import CloudWatchSink
from cedargate.audit.event import AuditEvent
from cedargate.audit.fanout import FanoutAudit
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.config import load_config
from cedargate.errors import AuditWriteError
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def _runtime_with_sinks(tree: Path, sinks: str) -> Runtime:
    config = tree / "cedargate.toml"
    config.write_text(
        config.read_text().replace('[audit]\npath = "audit.jsonl"\n', f'[audit]\npath = "audit.jsonl"\n{sinks}')
    )
    return build_runtime(load_config(config, environ={}))


async def _two_calls(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        await client.call_tool(
            "repo_read_file", {"repository": "acme/web", "path": "README.md"}, meta={"traceparent": TRACEPARENT}
        )
        await client.call_tool(
            "repo_write_file", {"repository": "acme/payments", "branch": "agent/x", "path": "a", "content": "a"}
        )


async def test_every_event_reaches_cloudwatch_logs(tree: Path) -> None:
    runtime = _runtime_with_sinks(tree, '\n[[audit.sinks]]\nkind = "cloudwatch"\nlog_group = "/cedargate/audit"\n')
    try:
        await _two_calls(runtime)
        runtime.audit.flush()
        logs = runtime.aws.client("logs")
        stored = logs.get_log_events(logGroupName="/cedargate/audit", logStreamName="cedargate-audit")["events"]
        [status] = runtime.audit.status()
    finally:
        runtime.close()
    primary = audit_events(runtime.config.audit.path)
    assert [json.loads(e["message"]) for e in stored] == primary
    assert status.delivered == 2 and status.pending == 0 and status.failures == 0


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter


async def test_each_call_is_a_span_joined_to_the_clients_trace(tree: Path, spans: InMemorySpanExporter) -> None:
    spans.clear()
    runtime = _runtime_with_sinks(tree, '\n[[audit.sinks]]\nkind = "opentelemetry"\n')
    try:
        await _two_calls(runtime)
        runtime.audit.flush()
    finally:
        runtime.close()
    read_event, write_event = audit_events(runtime.config.audit.path)
    # cedargate's spans are the only ones (the SDK's own, which names tools unredacted, is turned off).
    read, write = spans.get_finished_spans()
    assert read.attributes is not None and "cedargate.event_id" in read.attributes
    assert read.name == "tools/call repo_read_file"
    assert read.attributes is not None and write.attributes is not None
    assert read.attributes["mcp.method.name"] == "tools/call"
    assert read.attributes["gen_ai.tool.name"] == "repo_read_file"
    assert read.attributes["mcp.session.id"] == read_event["session_id"]
    assert read.attributes["cedargate.event_id"] == read_event["event_id"]
    assert "error.type" not in read.attributes
    assert format(read.context.trace_id, "032x") == TRACE_ID
    assert read.parent is not None and format(read.parent.span_id, "016x") == "b7ad6b7169203331"
    assert read_event["traceparent"] == TRACEPARENT
    assert write.attributes["error.type"] == "denied"
    assert write.attributes["cedargate.policies"] == ("prod-writes-forbidden",)
    assert write.parent is None and write_event["traceparent"] is None


class _Flaky:
    """A sink that fails its first ``failures`` deliveries, then keeps what it is given."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[str] = []

    def emit(self, events: Sequence[AuditEvent]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("collector unreachable")
        self.received.extend(e.event_id for e in events)

    def close(self) -> None:
        pass


def _event(n: int) -> AuditEvent:
    return sample_event(
        n,
        time=f"2026-01-01T00:00:0{n}+00:00",
        principal={"agent": "a", "team": "t", "on_behalf_of": "u", "mode": "interactive"},
        arguments={},
        duration_ms=1.0,
    )


def _eventually(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Wait for what a sink's background thread does, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_failing_secondary_retries_then_keeps_and_reports_the_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(failures=4)
    audit = FanoutAudit(JsonlAuditLog(tmp_path / "audit.jsonl"), [flaky], retries=3, backoff=0)
    try:
        audit.append(EventRecord.of(_event(1)))
        audit.flush()
        [status] = audit.status()
        assert (
            status.pending == 1
            and status.failures == 3
            and status.last_error == "ConnectionError: collector unreachable"
        )
        assert any("1 events not delivered after 3 attempts" in r.getMessage() for r in caplog.records)
        audit.append(EventRecord.of(_event(2)))
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    assert flaky.received == ["e1", "e2"]
    assert status.pending == 0 and status.delivered == 2
    assert [e["event_id"] for e in audit_events(tmp_path / "audit.jsonl")] == ["e1", "e2"]


def test_a_kept_event_is_delivered_when_no_further_event_comes(tmp_path: Path) -> None:
    flaky = _Flaky(failures=3)
    audit = FanoutAudit(JsonlAuditLog(tmp_path / "audit.jsonl"), [flaky], retries=3, backoff=0, idle_retry=0.05)
    try:
        audit.append(EventRecord.of(_event(1)))
        audit.flush()  # three attempts failed: the event is kept
        _eventually(lambda: audit.status()[0].delivered == 1)
        [status] = audit.status()
    finally:
        audit.close()
    assert flaky.received == ["e1"]
    assert status.pending == 0 and status.delivered == 1


def test_an_unreachable_cloudwatch_never_stops_the_primary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    client = boto3.client(
        "logs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x", aws_secret_access_key="y",
        config=boto3.session.Config(retries={"max_attempts": 1}, connect_timeout=1),
    )  # fmt: skip
    audit = FanoutAudit(JsonlAuditLog(tmp_path / "audit.jsonl"), [CloudWatchSink(client, "g", "s")], backoff=0)
    try:
        written = audit.append(EventRecord.of(_event(1)))
        audit.flush()
        [status] = audit.status()
    finally:
        audit.close()
    assert written.hash and audit_events(tmp_path / "audit.jsonl")[0]["event_id"] == "e1"
    assert status.name == "cloudwatch" and status.pending == 1 and status.last_error is not None
    assert any("audit sink cloudwatch" in r.getMessage() for r in caplog.records)


def test_a_secondary_never_sees_an_event_the_primary_refused(tmp_path: Path) -> None:
    flaky = _Flaky(failures=0)
    audit = FanoutAudit(JsonlAuditLog(tmp_path / "audit.jsonl"), [flaky])
    audit.primary.close()
    with pytest.raises(AuditWriteError):
        audit.append(EventRecord.of(_event(1)))
    audit.flush()
    audit.close()
    assert flaky.received == []


def test_a_record_the_model_cannot_read_is_lost_to_the_secondary_but_its_thread_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(failures=0)
    audit = FanoutAudit(JsonlAuditLog(tmp_path / "audit.jsonl"), [flaky], backoff=0)
    unreadable = EventRecord({**EventRecord.of(_event(1)).fields, "task": 42})  # the model wants a string
    try:
        audit.append(unreadable)
        audit.append(EventRecord.of(_event(2)))
        _eventually(lambda: audit.status()[0].delivered == 1)  # ``flush`` would wait forever on a dead thread
        [status] = audit.status()
    finally:
        audit.close()
    assert flaky.received == ["e2"]
    assert status.lost == 1 and status.delivered == 1
    [report] = [r for r in caplog.records if "event e1 could not be read back" in r.getMessage()]
    assert report.exc_info is not None and "task" in str(report.exc_info[1])  # the field the model refused
    assert [e["event_id"] for e in audit_events(tmp_path / "audit.jsonl")] == ["e1", "e2"]
