"""The MCP face of cedargate: a tool list that is exactly the manifests, and one call handler.

The low-level SDK server is used because manifests carry JSON Schema; the call handler hands
every call to the pipeline and turns its result into a ``CallToolResult``. Governance
failures are tool results with ``isError``, never protocol errors.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions

from cedargate import __version__, elicit
from cedargate.approvals import ApprovalQueue
from cedargate.http_identity import principal_for
from cedargate.identity import Principal
from cedargate.pipeline import CallRequest, CallResult
from cedargate.progress import client_progress
from cedargate.protocol_era import is_handshake_era
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


class SessionRegistry:
    """Which session a call belongs to, so policies and provenance see the calls before it.

    A handshake-era streamable-HTTP session id (issued and checked by the transport) names the
    session when there is one; a handshake-era connection is a session of its own; otherwise (2026-07-28 requests carry
    no session) the principal's task is the session. Never taken from what a client claims.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, ...], SessionState] = {}
        self._by_connection: dict[int, tuple[weakref.ref[Any], SessionState]] = {}

    def for_context(self, ctx: ServerRequestContext[Any], principal: Principal) -> SessionState:
        handshake = is_handshake_era(ctx)
        # Only a handshake-era session id was issued and checked by the transport; a 2026-07-28
        # request's header is whatever the client wrote, and would let it pick a fresh session.
        header = _session_header(ctx) if handshake else None
        if header is not None:
            return self._by_key.setdefault(("http", header), SessionState(id=header))
        client_params = ctx.session.client_params if handshake else None
        if client_params is not None:
            return self._for_connection(client_params)
        key = ("task", principal.agent, principal.on_behalf_of, principal.task)
        return self._by_key.setdefault(key, SessionState())

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


def build_server(runtime: Runtime) -> Server[Any]:
    """An SDK server whose list and call handlers are backed by ``runtime``."""
    sessions = SessionRegistry()
    notifier = ToolListNotifier()
    runtime.reloader.on_tools_changed(notifier.tools_changed)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        notifier.seen(ctx)
        return types.ListToolsResult(tools=runtime.catalog.mcp_tools)

    claims_config = runtime.config.auth.claims if runtime.config.auth is not None else None
    queue = ApprovalQueue(runtime.store, runtime.config.approvals)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        notifier.seen(ctx)
        # Over HTTP with auth, each request's verified token names the principal; stdio keeps the config's.
        principal = principal_for(ctx, runtime.principal, claims_config)
        request = CallRequest(
            tool=params.name,
            arguments=params.arguments,
            principal=principal,
            session=sessions.for_context(ctx, principal),
            traceparent=_traceparent(params),
            approval_id=_approval_id(params),
            progress=client_progress(ctx),
        )
        outcome = await elicit.call_with_self_approval(ctx, params, request, queue, runtime.pipeline.call)
        return outcome if isinstance(outcome, types.InputRequiredResult) else to_call_tool_result(outcome)

    return _GovernedServer(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=notifier.listen_handler,
    )
