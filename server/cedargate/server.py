"""The MCP face of cedargate: a tool list that is exactly the manifests, and one call handler.

The low-level SDK server is used because manifests carry JSON Schema; the call handler hands
every call to the pipeline and turns its result into a ``CallToolResult``. Governance
failures are tool results with ``isError``, never protocol errors.
"""

from __future__ import annotations

import json
import weakref
from datetime import UTC, datetime
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError

from cedargate import __version__, elicit
from cedargate.approvals import ApprovalQueue
from cedargate.audit.event import AuditEvent, AuditPrincipal, Outcome
from cedargate.audit.event_id import new_event_id
from cedargate.audit.log import AuditSink
from cedargate.audit.record import EventRecord
from cedargate.catalog import ToolCatalog
from cedargate.errors import AuditWriteError, clipped, quoted
from cedargate.http_identity import principal_for
from cedargate.identity import Principal
from cedargate.pipeline import CallRequest, CallResult
from cedargate.progress import client_progress
from cedargate.protocol_era import is_handshake_era
from cedargate.redact import MAX_AUDIT_STRING, arguments_for_audit, redact_text
from cedargate.runtime import Runtime
from cedargate.session import SessionState
from cedargate.tool_list_events import ToolListNotifier

SERVER_NAME = "cedargate"
APPROVAL_META_KEY = "cedargate/approval"
"""``_meta`` key a call may use to name the approval it retries under."""
INSTRUCTIONS = (
    "cedargate governs every tool call with Cedar policy and writes an audit event for each. "
    "A denied call says which policy denied it and why; do not retry it unchanged."
)


class SessionOwnerError(PermissionError):
    """A request names a session another principal opened."""


class SessionRegistry:
    """Which session a call belongs to, so policies and provenance see the calls before it.

    A handshake-era streamable-HTTP session id (issued and checked by the transport) names the
    session when there is one; a handshake-era connection is a session of its own; otherwise
    (2026-07-28 requests carry no session) the whole principal (agent, team, human, mode, task)
    is the session. Never taken from what a client claims.

    A session serves only the principal that opened it: the transport already refuses a token of
    another principal (``oauth.session_subject``); should one reach a call, it fails closed here.
    """

    def __init__(self) -> None:
        self._by_key: dict[Any, SessionState] = {}
        self._owners: dict[str, Principal] = {}
        self._by_connection: dict[int, tuple[weakref.ref[Any], SessionState]] = {}

    def for_context(self, ctx: ServerRequestContext[Any], principal: Principal) -> SessionState:
        """The call's session; raises ``SessionOwnerError`` when another principal opened it."""
        handshake = is_handshake_era(ctx)
        # Only a handshake-era session id was issued and checked by the transport; a 2026-07-28
        # request's header is whatever the client wrote, and would let it pick a fresh session.
        header = _session_header(ctx) if handshake else None
        if header is not None:
            return self._for_header(header, principal)
        client_params = ctx.session.client_params if handshake else None
        if client_params is not None:
            return self._for_connection(client_params)
        return self._by_key.setdefault(("principal", principal), SessionState())

    def _for_header(self, header: str, principal: Principal) -> SessionState:
        owner = self._owners.setdefault(header, principal)
        if owner != principal:
            raise SessionOwnerError(
                f"session {quoted(header)} was opened by another principal: a session serves only the agent, "
                "team, human, mode and task that opened it; open a session of your own (initialize without "
                "an mcp-session-id); nothing was run"
            )
        return self._by_key.setdefault(("http", header), SessionState(id=header))

    def _for_connection(self, marker: Any) -> SessionState:
        entry = self._by_connection.get(id(marker))
        if entry is not None and entry[0]() is marker:
            return entry[1]
        state = SessionState()
        key = id(marker)
        self._by_connection[key] = (weakref.ref(marker, lambda _: self._by_connection.pop(key, None)), state)
        return state


def _session_header(ctx: ServerRequestContext[Any]) -> str | None:
    headers = getattr(ctx.request, "headers", None)
    return headers.get("mcp-session-id") if headers is not None else None


def _traceparent(params: types.CallToolRequestParams) -> str | None:
    value = (params.meta or {}).get("traceparent")
    return value if isinstance(value, str) else None


def _approval_id(params: types.CallToolRequestParams) -> str | None:
    meta = params.meta if isinstance(params.meta, dict) else {}
    value = meta.get(APPROVAL_META_KEY)
    return value if isinstance(value, str) and value else None


class _GovernedServer(Server[Any]):
    """Says ``tools.listChanged`` in every handshake: hot reload changes the tool list.

    The streamable-HTTP session manager asks for the default initialization options, which
    would leave it out for handshake-era clients over HTTP.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


def to_call_tool_result(result: CallResult) -> types.CallToolResult:
    if result.is_error:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result.message or "call failed")], is_error=True
        )
    payload = result.payload or {}
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=payload, is_error=False
    )


def refuse_audited(
    audit: AuditSink,
    principal: Principal,
    params: types.CallToolRequestParams,
    session_id: str,
    reason: str,
    catalog: ToolCatalog | None = None,
) -> types.CallToolResult:
    """A call refused before the pipeline, written to the audit trail as denied; nothing runs.

    The arguments are audited as the pipeline audits them: the ``catalog``'s manifest names
    the fields kept out of the trail. Without a catalog, or for a tool it does not hold,
    every argument's value is kept out (fail closed: the tool's sensitive fields are unknown).
    """
    manifest = catalog.get(params.name) if catalog is not None else None
    arguments = params.arguments or {}
    sensitive = manifest.sensitive_fields if manifest is not None else tuple(arguments)
    event = AuditEvent(
        event_id=new_event_id(),
        time=datetime.now(UTC).isoformat(timespec="microseconds"),
        principal=AuditPrincipal(
            agent=principal.agent, team=principal.team, on_behalf_of=principal.on_behalf_of, mode=principal.mode
        ),
        session_id=session_id,
        task=principal.task,
        tool=clipped(params.name if manifest is not None else redact_text(params.name), MAX_AUDIT_STRING),
        arguments=arguments_for_audit(arguments, sensitive),
        outcome=Outcome.DENIED,
        error=redact_text(reason),
        duration_ms=0.0,
    )
    try:
        written = audit.append(EventRecord.of(event))
    except AuditWriteError as exc:
        reason = f"{reason}; {exc}"
    else:
        reason = f"{reason} (audit event {written.event_id})"
    return types.CallToolResult(content=[types.TextContent(type="text", text=reason)], is_error=True)


def build_server(runtime: Runtime) -> Server[Any]:
    """An SDK server whose list and call handlers are backed by ``runtime``."""
    sessions = SessionRegistry()
    notifier = ToolListNotifier()
    runtime.reloader.on_tools_changed(notifier.tools_changed)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        notifier.seen(ctx)
        if params is not None and params.cursor is not None:
            # The whole list fits one page, so this server never hands out a cursor to come back with.
            raise MCPError(types.INVALID_PARAMS, f"invalid cursor {quoted(params.cursor)}: tools/list has one page")
        return types.ListToolsResult(tools=runtime.catalog.mcp_tools)

    claims_config = runtime.config.auth.claims if runtime.config.auth is not None else None
    queue = ApprovalQueue(runtime.store, runtime.config.approvals)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        notifier.seen(ctx)
        # Over HTTP with auth, each request's verified token names the principal; stdio keeps the config's.
        principal = principal_for(ctx, runtime.principal, claims_config)
        try:
            session = sessions.for_context(ctx, principal)
        except SessionOwnerError as exc:
            return refuse_audited(
                runtime.audit, principal, params, _session_header(ctx) or "unknown", str(exc), runtime.catalog
            )
        request = CallRequest(
            tool=params.name,
            arguments=params.arguments,
            principal=principal,
            session=session,
            traceparent=_traceparent(params),
            approval_id=_approval_id(params),
            progress=client_progress(ctx),
        )
        outcome = await elicit.call_with_self_approval(ctx, params, request, queue, runtime.pipeline.call)
        if isinstance(outcome, types.InputRequiredResult):
            return outcome
        if outcome.outcome is Outcome.UNKNOWN_TOOL:
            # A protocol error, as MCP has it for a name the server does not publish (still audited).
            raise MCPError(types.INVALID_PARAMS, outcome.message or "unknown tool")
        return to_call_tool_result(outcome)

    server = _GovernedServer(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=notifier.listen_handler,
    )
    # The SDK's own span names the raw tool (an unknown tool's name may carry a secret) in a trace
    # of its own; the `opentelemetry` audit sink's span is the redacted one. The SDK's opt-out.
    server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    return server
