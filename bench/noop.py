"""The trivial tool, governed and ungoverned, in-process or as a stdio server.

Governed: cedargate's own runtime and server, with one more repository operation (``noop``).
Ungoverned: the same SDK server shape and the same handler, called directly (no identify,
validate, resolve, authorize, audit) in a worker thread as the pipeline's execute step does.

    python -m bench.noop --config PATH governed|ungoverned     # serve over stdio
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext

from bench.fixture import NOOP_ARGS, NOOP_TOOL
from cedargate.aws_session import AwsClients
from cedargate.config import Config, load_config
from cedargate.handlers import Handler, HandlerCall, HandlerRegistry
from cedargate.handlers.aws import AwsHandlers
from cedargate.handlers.repo import RepoHandlers
from cedargate.identity import principal_from_config
from cedargate.manifest import ToolManifest
from cedargate.resolve import resolve_resource
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server
from cedargate.transport import serve_stdio


def noop(call: HandlerCall) -> dict[str, Any]:
    """The trivial handler: no I/O, a small result."""
    return {"repository": call.resource.ref.id, "ok": True}


class BenchRepoHandlers(RepoHandlers):
    """cedargate's repository operations plus ``noop``."""

    def check(self, manifest: ToolManifest) -> None:
        if getattr(manifest.handler, "operation", "") != "noop":
            super().check(manifest)

    def handler_for(self, manifest: ToolManifest) -> Handler:
        if getattr(manifest.handler, "operation", "") == "noop":
            return noop
        return super().handler_for(manifest)


def bench_registry(aws: AwsClients | None, config: Config | None) -> HandlerRegistry:
    """cedargate's handler families, with ``noop`` added to the repository operations."""
    repositories = config.repositories if config is not None else ()
    duties = config.aws.duties if config is not None else None
    return HandlerRegistry({"repo": BenchRepoHandlers(repositories), "aws": AwsHandlers(aws, duties)})


def build_bench_runtime(config: Config) -> Runtime:
    """``cedargate.runtime.build_runtime`` with the bench handlers registered."""
    return build_runtime(config, registry_for=bench_registry)


def build_ungoverned_server(runtime: Runtime) -> Server[Any]:
    """The same tool list and handler with the pipeline bypassed: the baseline for overhead."""
    manifest = runtime.catalog.tools[NOOP_TOOL]
    resource = resolve_resource(manifest, NOOP_ARGS, runtime.config)
    tools = runtime.catalog.mcp_tools
    principal = principal_from_config(runtime.config)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        call = HandlerCall(manifest, params.arguments or {}, resource, principal, "", "")
        payload = await anyio.to_thread.run_sync(noop, call)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(payload, indent=2))],
            structured_content=payload,
            is_error=False,
        )

    return Server("ungoverned", on_list_tools=list_tools, on_call_tool=call_tool)


def build(runtime: Runtime, governed: bool) -> Server[Any]:
    return build_server(runtime) if governed else build_ungoverned_server(runtime)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the benchmark's trivial tool over stdio.")
    parser.add_argument("--config", required=True)
    parser.add_argument("kind", choices=["governed", "ungoverned"])
    args = parser.parse_args()
    runtime = build_bench_runtime(load_config(args.config, environ={}))
    try:
        anyio.run(serve_stdio, build(runtime, args.kind == "governed"))
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
