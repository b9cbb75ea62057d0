"""Telling connected clients that the tool list changed (after a hot reload).

Handshake-era clients get ``notifications/tools/list_changed`` on their connection;
2026-07-28 clients get it on the ``subscriptions/listen`` streams they opened, through the
SDK's subscription bus. A connection is remembered while its handshake parameters live
(weakly), so a closed one is simply forgotten.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

logger = logging.getLogger(__name__)


class ToolListNotifier:
    """Remembers handshake-era connections as they make requests, and notifies them all on a change."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen_handler = ListenHandler(self.bus)
        self._connections: dict[int, tuple[weakref.ref[Any], ServerSession]] = {}

    def seen(self, ctx: ServerRequestContext[Any]) -> None:
        """Remember the connection a request came on (only handshake-era ones take bare notifications)."""
        marker = ctx.session.client_params
        if marker is None or id(marker) in self._connections:
            return
        key = id(marker)
        self._connections[key] = (weakref.ref(marker, lambda _: self._connections.pop(key, None)), ctx.session)

    async def tools_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for _, session in list(self._connections.values()):
            try:
                await session.send_tool_list_changed()
            except Exception:  # boundary: a closed connection must not stop the others being told
                logger.info("could not tell a client that the tool list changed; it sees it on its next list")
