"""Secondary sinks say what the trail says: the database copy answers queries as the file does,
and telemetry holds only cedargate's redacted span (not the SDK's span with the raw tool name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from tests.conftest import audit_events
from tests.governed_tree import store_toml

from cedargate.cli import main
from cedargate.config import StoreConfig, load_config
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
READ = ("repo_read_file", {"repository": "acme/web", "path": "README.md"})


def _runtime(tree: Path, sink: str, store: StoreConfig | None = None) -> Runtime:
    path = tree / "cedargate.toml"
    text = path.read_text().replace('[audit]\npath = "audit.jsonl"\n', f'[audit]\npath = "audit.jsonl"\n{sink}')
    path.write_text(text + ("\n" + store_toml(store) if store is not None else ""))
    return build_runtime(load_config(path, environ={}))


def _query(tree: Path, capsys: pytest.CaptureFixture[str], *filters: str) -> list[dict[str, Any]]:
    assert main(["--config", str(tree / "cedargate.toml"), "audit", "query", *filters, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_a_tool_filter_with_u_fffd_does_not_match_a_stored_nul(
    tree: Path, store_config: StoreConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """NUL is stored as U+FFFD in a filter column, so `bad\\ufffdtool` and `bad\\x00tool` share one."""
    runtime = _runtime(tree, '\n[[audit.sinks]]\nkind = "database"\n', store_config)
    try:
        async with Client(build_server(runtime)) as client:
            for name in ("bad\x00tool", "bad\ufffdtool"):
                with pytest.raises(MCPError):  # unknown tools: protocol errors, audited all the same
                    await client.call_tool(name, {})
        runtime.audit.flush()
    finally:
        runtime.close()
    with_nul, with_fffd = audit_events(runtime.config.audit.path)
    for name, event in (("bad\ufffdtool", with_fffd), ("bad\x00tool", with_nul)):
        from_file = _query(tree, capsys, "--tool", name)
        assert [e["event_id"] for e in from_file] == [event["event_id"]]
        assert _query(tree, capsys, "--source", "database", "--tool", name) == from_file
        assert _query(tree, capsys, "--source", "database", "--tool", name, "--limit", "1") == from_file


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process makes; the global provider can be set once, so reuse one already set."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    owned = not isinstance(provider, TracerProvider)
    if owned:
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()
    if owned:  # unset it again, so a later test module can install a provider of its own
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None


async def test_only_cedargates_redacted_span_reaches_telemetry(tree: Path, spans: InMemorySpanExporter) -> None:
    spans.clear()
    runtime = _runtime(tree, '\n[[audit.sinks]]\nkind = "opentelemetry"\n')
    try:
        async with Client(build_server(runtime)) as client:
            await client.call_tool(*READ)
            with pytest.raises(MCPError):
                await client.call_tool(f"tool_{SECRET}", {})
        runtime.audit.flush()
    finally:
        runtime.close()
    finished = spans.get_finished_spans()
    for span in finished:
        shown = json.dumps({"name": span.name, "attributes": dict(span.attributes or {})}, default=str)
        assert SECRET not in shown, f"{span.instrumentation_scope.name} span leaks the tool name: {span.name}"
    calls = [s for s in finished if s.name.startswith("tools/call")]
    assert [s.instrumentation_scope.name for s in calls] == ["cedargate", "cedargate"]  # one span per call
    assert [s.name for s in calls] == ["tools/call repo_read_file", "tools/call tool_[REDACTED]"]
