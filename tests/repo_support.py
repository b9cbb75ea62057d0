"""Helpers for the repository tool tests: configuring `acme/web`, calling tools, a forge stand-in."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mcp import Client

from cedargate.config import load_config
from cedargate.git import run_git
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

WEB_ANCHOR = 'owner_team = "storefront"\n'


def configure_web(tree: Path, settings: str) -> Runtime:
    """Add TOML lines (and sub-tables) to `acme/web` in the demo config; returns a fresh runtime."""
    config_path = tree / "cedargate.toml"
    text = config_path.read_text()
    if WEB_ANCHOR not in text:
        raise AssertionError("demo config changed: `acme/web` anchor not found")
    config_path.write_text(text.replace(WEB_ANCHOR, WEB_ANCHOR + settings.strip() + "\n\n", 1))
    return build_runtime(load_config(config_path, environ={}))


def bare_remote(path: Path) -> Path:
    path.mkdir(parents=True)
    run_git(path, ["init", "-q", "--bare", "-b", "main"])
    return path


class Session:
    """One MCP client session; ``call`` returns (ok, structured result or error text)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> tuple[bool, Any]:
        result = await self.client.call_tool(tool, dict(arguments))
        if result.is_error:
            return False, result.content[0].text  # type: ignore[union-attr]
        return True, result.structured_content

    async def ok(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        ok, value = await self.call(tool, arguments)
        assert ok, f"{tool} failed: {value}"
        return dict(value)

    async def refused(self, tool: str, arguments: Mapping[str, Any]) -> str:
        ok, value = await self.call(tool, arguments)
        assert not ok, f"{tool} unexpectedly succeeded: {value}"
        return str(value)


def client_for(runtime: Runtime, mode: str = "legacy") -> Client:
    return Client(build_server(runtime), mode=mode)


@dataclass
class ForgeStandIn:
    """A local HTTP server that answers GitHub's create-pull-request endpoint and records requests."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 201
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def forge_stand_in() -> Iterator[ForgeStandIn]:
    forge = ForgeStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            forge.requests.append({"path": self.path, "headers": dict(self.headers.items()), "json": body})
            number = len(forge.requests)
            owner_repo = self.path.removeprefix("/repos/").removesuffix("/pulls")
            if forge.status == 201:
                reply = {
                    "number": number,
                    "html_url": f"{forge.url}/{owner_repo}/pull/{number}",
                    "url": f"{forge.url}/repos/{owner_repo}/pulls/{number}",
                }
            else:
                reply = {"message": "Validation Failed"}
            data = json.dumps(reply).encode()
            self.send_response(forge.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    forge.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=forge.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield forge
    finally:
        forge.server.shutdown()
        forge.server.server_close()
        thread.join()
