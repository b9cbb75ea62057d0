"""Serving the MCP server over stdio or streamable HTTP."""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.stdio import stdio_server


async def serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read, write):
        # Hot reload can change the tool list; clients are told (tools.listChanged).
        options = server.create_initialization_options(NotificationOptions(tools_changed=True))
        await server.run(read, write, options)


async def serve_http(server: Server[Any], host: str, port: int, **app_options: Any) -> None:
    """Streamable HTTP on ``http://host:port/mcp``; loopback hosts get DNS-rebinding protection.

    ``app_options`` go to ``streamable_http_app`` (bearer auth and admin routes, see ``http_app``).
    """
    import uvicorn

    app = server.streamable_http_app(host=host, **app_options)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
