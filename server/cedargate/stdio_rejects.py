"""Answers to stdio lines that are no JSON-RPC message, which the SDK drops without a word.

The SDK's stdio reader hands a line it cannot parse to the server as an exception, and the
server only logs it: a client that sent a malformed line (or a batch) waited for a reply that
never came. JSON-RPC asks for an error carrying the request's id, or null when it cannot be read, as the
streamable HTTP transport already answers. No handler runs, so nothing is audited.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Final, Self

import anyio
import mcp_types as types
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from cedargate.errors import clipped

_REASONS_SHOWN: Final = 3


class RejectingReadStream:
    """The server's read stream, with unreadable lines answered here instead of passed on."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], replies: WriteStream[SessionMessage]) -> None:
        self._inner = inner
        self._replies = replies

    @property
    def last_context(self) -> object:
        """The sender's context of the last message, for the dispatcher (see ``ReadStream``)."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            await self._replies.send(SessionMessage(rejection(item)))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None


def rejection(problem: Exception) -> types.JSONRPCError:
    """The JSON-RPC error for a line that failed to parse: -32700 if it is no JSON, else -32600."""
    issues = problem.errors() if isinstance(problem, ValidationError) else []
    if any(issue["type"] == "json_invalid" for issue in issues):
        detail = issues[0].get("ctx", {}).get("error", issues[0]["msg"])
        return _error(types.PARSE_ERROR, f"Parse error: the line is not JSON ({detail}); send one JSON object per line")
    if issues and all(issue["type"] == "model_type" for issue in issues):
        return _error(
            types.INVALID_REQUEST,
            "Invalid Request: send one JSON-RPC 2.0 object per line (batches are not part of MCP)",
        )
    reasons = _reasons(issues) or clipped(str(problem))
    return _error(
        types.INVALID_REQUEST,
        f"Invalid Request: the line is no JSON-RPC 2.0 request, notification or response ({reasons})",
        _readable_id(issues),
    )


def _readable_id(issues: list[Any]) -> types.RequestId | None:
    """The request's id when the object names a usable one, so a client waiting on it hears back.

    pydantic reports a missing member of the object with the whole object as its input.
    """
    for issue in issues:
        message = issue.get("input")
        if isinstance(message, dict):
            request_id = message.get("id")
            if isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool)):
                return request_id
    return None


def _reasons(issues: list[Any]) -> str:
    """The distinct problems pydantic found, each once, without the union member's name."""
    seen: list[str] = []
    for issue in issues:
        where = ".".join(str(part) for part in issue["loc"][1:]) or "message"
        reason = f"{where}: {issue['msg']}"
        if reason not in seen:
            seen.append(reason)
    shown = "; ".join(seen[:_REASONS_SHOWN])
    return shown + (f"; and {len(seen) - _REASONS_SHOWN} more" if len(seen) > _REASONS_SHOWN else "")


def _error(code: int, message: str, request_id: types.RequestId | None = None) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))
