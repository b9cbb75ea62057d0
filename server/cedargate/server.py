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

from cedargate import __version__
from cedargate.pipeline import CallRequest, CallResult
from cedargate.runtime import Runtime
from cedargate.session import SessionState

SERVER_NAME = "cedargate"
INSTRUCTIONS = (
    "cedargate governs every tool call with Cedar policy and writes an audit event for each. "
    "A denied call says which policy denied it and why; do not retry it unchanged."
)


class SessionRegistry:
    """Maps an MCP connection (or HTTP session id) to the state policies see for it."""

    def __init__(self) -> None:
        self._by_connection: weakref.WeakKeyDictionary[Any, SessionState] = weakref.WeakKeyDictionary()
        self._by_header: dict[str, SessionState] = {}

    def for_context(self, ctx: ServerRequestContext[Any]) -> SessionState:
        header = _session_header(ctx)
        if header is not None:
            return self._by_header.setdefault(header, SessionState(id=header))
        state = self._by_connection.get(ctx.session)
        if state is None:
            state = self._by_connection[ctx.session] = SessionState()
        return state


def _session_header(ctx: ServerRequestContext[Any]) -> str | None:
    request = ctx.request
    headers = getattr(request, "headers", None)
    return headers.get("mcp-session-id") if headers is not None else None


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
    tools = runtime.catalog.mcp_tools

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        request = CallRequest(
            tool=params.name,
            arguments=params.arguments,
            principal=runtime.principal,
            session=sessions.for_context(ctx),
        )
        return to_call_tool_result(await runtime.pipeline.call(request))

    return Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
