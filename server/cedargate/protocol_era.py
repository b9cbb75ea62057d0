"""Which MCP protocol generation a request speaks.

Handshake-era requests (``initialize`` first; 2025-11-25 and before) belong to a connection
that negotiated once; 2026-07-28 requests stand alone. Sessions, progress and self-approval
each depend on which.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerRequestContext
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS


def is_handshake_era(ctx: ServerRequestContext[Any]) -> bool:
    return ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
