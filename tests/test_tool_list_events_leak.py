"""The tool-list notifier forgets closed connections, yet still tells the open ones of a change."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server.connection import Connection
from tests.conftest import settled_reload

from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

SESSIONS = 20


def _live_connections() -> int:
    """Connections still in memory once the collector ran: what a long-running HTTP server accumulates."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Connection))


async def test_closed_sessions_leave_no_connection_behind(runtime: Runtime) -> None:
    server = build_server(runtime)
    before = _live_connections()
    for _ in range(SESSIONS):
        async with Client(server, mode="legacy") as client:
            await client.list_tools()
            await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    assert _live_connections() == before


async def test_an_open_session_is_still_told_after_others_closed(runtime: Runtime) -> None:
    server = build_server(runtime)
    notices: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notices.append(message)

    async with Client(server, mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        for _ in range(3):
            async with Client(server, mode="legacy") as passing:
                await passing.list_tools()
        gc.collect()  # the open connection is held by its session, not by the notifier alone
        text = (runtime.config.tools_dir / "repo/read_file.toml").read_text()
        (runtime.config.tools_dir / "repo/show.toml").write_text(text.replace("repo_read_file", "repo_show_file"))
        result = await settled_reload(runtime)
        with anyio.fail_after(5):
            while not notices:
                await anyio.sleep(0)
    assert result is not None and result.tools_changed
    assert len(notices) == 1
