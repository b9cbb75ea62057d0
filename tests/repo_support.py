"""Helpers for the repository tool tests: configuring `acme/web`, calling tools, forge and git HTTP stand-ins."""

from __future__ import annotations

import json
import os
import subprocess
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
COMMITTER: Mapping[str, str] = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
}
"""The identity of commits tests make in a fixture repository themselves (not through a tool)."""


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


def with_remote(tree: Path, settings: str = "") -> tuple[Runtime, Path]:
    """A runtime whose acme/web pushes to a fresh bare repository (returned too), with ``settings`` added."""
    remote = bare_remote(tree / "remote.git")
    return configure_web(tree, f'remote = "{remote}"\n{settings}'), remote


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


async def read_and_close(runtime: Runtime, path: str, heard: list[str] | None = None) -> dict[str, Any]:
    """One `repo_read_file` of `acme/web` through a fresh client session; the runtime is closed after.

    With ``heard``, the call asks for progress and each report's message is appended to it.
    """

    async def progress(done: float, total: float | None, message: str | None) -> None:
        assert heard is not None
        heard.append(message or "")

    try:
        async with client_for(runtime) as client:
            result = await client.call_tool(
                "repo_read_file",
                {"repository": "acme/web", "path": path},
                progress_callback=progress if heard is not None else None,
            )
    finally:
        runtime.close()
    assert result.is_error is False, result.content
    return dict(result.structured_content or {})


@dataclass
class ForgeStandIn:
    """A local HTTP server that answers GitHub's create-pull-request endpoint and records requests."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 201
    server: ThreadingHTTPServer | None = None
    reply: bytes | None = None
    """When set, the body of every answer (with ``status``), instead of the usual pull request or refusal."""

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def forge_stand_in() -> Iterator[ForgeStandIn]:
    forge = ForgeStandIn()

    class Handler(_StandInHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            forge.requests.append({"path": self.path, "headers": dict(self.headers.items()), "json": body})
            number = len(forge.requests)
            owner_repo = self.path.removeprefix("/repos/").removesuffix("/pulls")
            if forge.reply is not None:
                self.reply(forge.status, forge.reply, [("Content-Type", "application/json")])
                return
            if forge.status == 201:
                reply = {
                    "number": number,
                    "html_url": f"{forge.url}/{owner_repo}/pull/{number}",
                    "url": f"{forge.url}/repos/{owner_repo}/pulls/{number}",
                }
            else:
                reply = {"message": "Validation Failed"}
            self.reply(forge.status, json.dumps(reply).encode(), [("Content-Type", "application/json")])

    forge.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with _serving(forge.server):
        yield forge


@dataclass
class GitHttpStandIn:
    """git's smart HTTP on loopback (``git http-backend``), answering only an expected ``Authorization``."""

    root: Path
    authorization: str
    seen: list[str] = field(default_factory=list)
    """The ``Authorization`` header of every request, as sent (``""`` when there was none)."""
    server: ThreadingHTTPServer | None = None

    def url(self, name: str) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{name}"


@contextmanager
def git_http_stand_in(root: Path, authorization: str) -> Iterator[GitHttpStandIn]:
    stand_in = GitHttpStandIn(root, authorization)

    class Handler(_StandInHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            sent = self.headers.get("Authorization", "")
            stand_in.seen.append(sent)
            if sent != stand_in.authorization:
                self.reply(401, b"", [("WWW-Authenticate", 'Basic realm="stand-in"')])
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            env = {
                "PATH": os.environ.get("PATH", ""),
                "GIT_PROJECT_ROOT": str(stand_in.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": "x-access-token",  # http-backend takes pushes only from an authenticated user
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
            }
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
            status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
            self.reply(status, payload, [(k, v.strip()) for k, v in headers if k.lower() != "status"])

    stand_in.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with _serving(stand_in.server):
        yield stand_in


class _StandInHandler(BaseHTTPRequestHandler):
    """A quiet request handler with one way to answer."""

    def reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    """Serve on a daemon thread for the block's duration, then stop and close."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
