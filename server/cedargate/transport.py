"""Serving the MCP server over stdio or streamable HTTP."""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server.stdio import stdio_server


async def serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read, write):
        # The server says what it can notify (cedargate's says tools.listChanged on every transport).
        await server.run(read, write, server.create_initialization_options())


async def serve_http(server: Server[Any], host: str, port: int, **app_options: Any) -> None:
    """Streamable HTTP on ``http://host:port/mcp``; loopback hosts get DNS-rebinding protection.

    ``app_options`` go to ``streamable_http_app`` (bearer auth and admin routes, see ``http_app``).
    """
    import uvicorn

    app = server.streamable_http_app(host=host, **app_options)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
