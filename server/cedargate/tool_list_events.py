"""Telling connected clients that the tool list changed (after a hot reload).

Handshake-era clients get ``notifications/tools/list_changed`` on their connection;
2026-07-28 clients get it on the ``subscriptions/listen`` streams they opened, through the
SDK's subscription bus. A connection is remembered only weakly, and forgotten as soon as it
closes: the notifier must never be what keeps a finished client's connection (its streams,
its handshake) in memory, which over HTTP would grow with every session ever served.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from mcp import types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

logger = logging.getLogger(__name__)

_TOOLS_CHANGED = types.ToolListChangedNotification().model_dump(by_alias=True, mode="json", exclude_none=True)


class ToolListNotifier:
    """Remembers handshake-era connections as they make requests, and notifies them all on a change."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen_handler = ListenHandler(self.bus)
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        """Open connections; weak, so one nothing else holds any more drops out even if its close went unseen."""

    @property
    def remembered(self) -> int:
        """How many connections would be told of a change now."""
        return len(self._connections)

    def seen(self, ctx: ServerRequestContext[Any]) -> None:
        """Remember the connection a request came on (only handshake-era ones take bare notifications)."""
        if ctx.session.client_params is None:
            return
        connection = _connection_of(ctx)
        if connection is None or connection in self._connections:
            return
        self._connections.add(connection)
        # Forget it when it closes, without waiting for the garbage collector; the callback holds
        # the connection only weakly, so the connection's own exit stack keeps no cycle through us.
        forget = weakref.ref(connection)
        connections = self._connections

        def closed() -> None:
            if (gone := forget()) is not None:
                connections.discard(gone)

        connection.exit_stack.callback(closed)

    async def tools_changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._connections):
            try:
                await connection.outbound.notify(_TOOLS_CHANGED["method"], _TOOLS_CHANGED.get("params"))
            except Exception:  # boundary: a closed connection must not stop the others being told
                logger.info("could not tell a client that the tool list changed; it sees it on its next list")


def _connection_of(ctx: ServerRequestContext[Any]) -> Connection | None:
    """The connection behind this request's per-request session.

    The SDK builds a ``ServerSession`` per request and keeps the connection (whose
    ``outbound`` and ``exit_stack`` are public) only on it; holding the session instead would
    hold the connection strongly. Should a future SDK move it, nothing is remembered and the
    hot-reload tests, which expect the notification, fail.
    """
    connection = getattr(ctx.session, "_connection", None)
    return connection if isinstance(connection, Connection) else None
