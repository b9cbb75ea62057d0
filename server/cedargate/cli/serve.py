"""``cedargate serve``: the governed tools over stdio or streamable HTTP."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from cedargate.cli._common import config_from, port_number

if TYPE_CHECKING:
    from cedargate.runtime import Runtime


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="serve the governed tools over MCP", description="Serve the governed tools over MCP."
    )
    serve.add_argument(
        "--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or streamable HTTP"
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8750, help="HTTP port (default: 8750; 0 for any free port)")
    serve.add_argument(
        "--aws",
        choices=["sandbox", "real", "auto"],
        help="AWS backend, overriding `aws.mode`: the embedded sandbox account, real AWS, or auto",
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cedargate.http_app import build_http_app, refuse_open_http, url_host
    from cedargate.identity import principal_from_config
    from cedargate.runtime import build_runtime
    from cedargate.server import build_server
    from cedargate.transport import listen_http, serve_http, serve_stdio

    _log_warnings()
    config = config_from(args)
    if args.aws:
        config = config.model_copy(update={"aws": config.aws.model_copy(update={"mode": args.aws})})
    if args.transport == "stdio":
        principal_from_config(config)  # stdio has no token: the config must name the principal
    listener = None
    if args.transport == "http":
        refuse_open_http(config, args.host)
        listener = listen_http(args.host, args.port)
    try:
        runtime = build_runtime(config)
    except BaseException:
        if listener is not None:
            listener.close()
        raise
    try:
        server = build_server(runtime)
        if listener is not None:
            port = listener.getsockname()[1]
            app = build_http_app(server, runtime, args.host, port)  # before the banner: a bad [auth] says so first
            print(f"cedargate: serving streamable HTTP on http://{url_host(args.host)}:{port}/mcp", file=sys.stderr)
            anyio.run(_with_reload, runtime, serve_http(app, listener))
        else:
            anyio.run(_with_reload, runtime, serve_stdio(server))
    finally:
        runtime.close()
    return 0


def _log_warnings() -> None:
    """Warnings (a refused bearer token and why, a shadow decision) on stderr; nothing below WARNING.

    Left to Python's last-resort handler they would print bare, and INFO would never show.
    Does nothing when logging is already configured (tests, an embedding program).
    """
    logging.basicConfig(level=logging.WARNING, format="cedargate: %(levelname)s %(name)s: %(message)s")


async def _with_reload(runtime: Runtime, serving: Coroutine[Any, Any, None]) -> None:
    """Serve, and watch ``tools/`` and ``policies/`` for changes while serving (unless turned off)."""
    interval = runtime.config.policy.reload_interval_seconds
    async with anyio.create_task_group() as tasks:
        if interval > 0:
            tasks.start_soon(runtime.reloader.watch, interval)
        await serving
        tasks.cancel_scope.cancel()
