"""A secondary sink that records each tool call as an OpenTelemetry span.

Span name and attributes follow the MCP and GenAI semantic conventions: ``tools/call
{tool}``, ``mcp.method.name``, ``gen_ai.operation.name`` = ``execute_tool``,
``gen_ai.tool.name``, ``mcp.session.id``, ``error.type`` for calls that did not succeed;
cedargate's own facts go under ``cedargate.*``. The span's parent is the trace context the
client sent in the request's ``_meta.traceparent`` (recorded on the audit event), so the
call joins the agent's trace. Start and end times are the call's, taken from the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cedargate import __version__
from cedargate.audit.event import AuditEvent, Outcome

_PROPAGATOR = TraceContextTextMapPropagator()


class OpenTelemetrySink:
    """Emits one server span per audit event through ``provider`` (default: the global one)."""

    name = "opentelemetry"

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._tracer = (provider or trace.get_tracer_provider()).get_tracer("cedargate", __version__)

    def emit(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            self._span(event)

    def close(self) -> None:
        """Flushing belongs to whoever configured the provider."""

    def _span(self, event: AuditEvent) -> None:
        start_ns = int(datetime.fromisoformat(event.time).timestamp() * 1_000_000_000)
        end_ns = start_ns + int(event.duration_ms * 1_000_000)
        parent = _PROPAGATOR.extract({"traceparent": event.traceparent}) if event.traceparent else None
        span = self._tracer.start_span(
            f"tools/call {event.tool}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes=_attributes(event),
        )
        if event.outcome is not Outcome.SUCCEEDED:
            span.set_status(Status(StatusCode.ERROR, event.error or event.outcome.value))
        span.end(end_time=end_ns)


def _attributes(event: AuditEvent) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "mcp.method.name": "tools/call",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": event.tool,
        "mcp.session.id": event.session_id,
        "cedargate.event_id": event.event_id,
        "cedargate.outcome": event.outcome.value,
        "cedargate.agent": event.principal.agent,
        "cedargate.on_behalf_of": event.principal.on_behalf_of,
        "cedargate.team": event.principal.team,
        "cedargate.task": event.task,
    }
    if event.outcome is not Outcome.SUCCEEDED:
        attributes["error.type"] = event.outcome.value
    if event.decision is not None:
        attributes["cedargate.decision"] = event.decision.effect.value
        attributes["cedargate.policies"] = [p.id for p in event.decision.policies]
    if event.resource is not None:
        attributes["cedargate.resource"] = f"{event.resource.type}/{event.resource.id}"
    if event.environment is not None:
        attributes["cedargate.environment"] = event.environment
    if event.risk is not None:
        attributes["cedargate.risk"] = event.risk
    return attributes
