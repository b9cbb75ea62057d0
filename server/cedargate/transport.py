"""Serving the MCP server over stdio or streamable HTTP."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final, cast

import anyio
from mcp.server import Server
from mcp.server.stdio import stdio_server
from starlette.types import ASGIApp

from cedargate.errors import ConfigError
from cedargate.stdio_input import wire_input
from cedargate.stdio_rejects import RejectingReadStream

_BACKLOG: Final = 2048
"""Connections the kernel queues before they are accepted (uvicorn's own default)."""
STOPPING_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""Stop serving gracefully: calls in flight are audited and the runtime closes."""


async def serve_stdio(server: Server[Any]) -> None:
    """MCP over stdin and stdout until the client closes stdin, or SIGINT or SIGTERM arrives.

    A line that is no JSON-RPC message gets a JSON-RPC error (``stdio_rejects``), not silence.

    A signal cancels the serving: a call in flight is audited as cancelled (a tool already
    running is waited for, never cut off half-way), and the caller's ``finally`` closes the
    runtime, so secondary audit sinks deliver what they hold. A second signal acts as usual.
    """
    async with anyio.create_task_group() as serving:
        serving.start_soon(_stop_on_signal, serving.cancel_scope)
        async with wire_input() as wire:
            stdin = cast("anyio.AsyncFile[str] | None", wire)  # the SDK only iterates it, line by line
            async with stdio_server(stdin=stdin) as (read, write):
                # The server says what it can notify (cedargate's says tools.listChanged on every transport).
                await server.run(RejectingReadStream(read, write), write, server.create_initialization_options())
        serving.cancel_scope.cancel()


async def _stop_on_signal(serving: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(*STOPPING_SIGNALS) as signals:
        async for received in signals:
            _announce_stop(received)
            serving.cancel()
            return


def _announce_stop(received: int) -> None:
    name = signal.Signals(received).name
    print(f"cedargate: {name} received; stopping (calls in flight are audited)", file=sys.stderr)


def listen_http(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound before serving so a taken port is a clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host") from exc
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(_BACKLOG)
    except OSError as exc:
        listener.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what listens there or pick another --port"
        ) from exc
    return listener


async def serve_http(app: ASGIApp, listener: socket.socket) -> None:
    """Streamable HTTP on ``listener`` (see ``listen_http``): ``app`` is built by ``http_app.build_http_app``.

    The app carries what depends on the address (DNS-rebinding protection on every loopback
    host, for the port bound) and on ``[auth]`` (bearer auth, the admin routes).
    """
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's graceful shutdown, without killing the process with the signal afterwards.

        uvicorn raises the signal again once it has shut down; under SIGTERM's default action
        that ends Python before the caller's ``finally`` closes the runtime (secondary audit
        sinks would lose what they hold). The process exits normally instead.
        """

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {stopping: signal.signal(stopping, self.handle_exit) for stopping in STOPPING_SIGNALS}
            try:
                yield
            finally:
                for stopping, handler in previous.items():
                    signal.signal(stopping, handler)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                _announce_stop(sig)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await GracefulServer(config).serve(sockets=[listener])
