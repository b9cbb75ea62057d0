"""A local issuer for HTTP tests: an RSA key made in the test, its JWKS served on loopback, and a
cedargate streamable-HTTP server (uvicorn in a thread) that trusts it."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from cedargate.config import load_config
from cedargate.http_app import build_http_app
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

ISSUER = "https://issuer.test"


@dataclass
class Issuer:
    """Signs tokens with its key; ``jwks_url`` serves the public half."""

    key: rsa.RSAPrivateKey
    kid: str
    jwks_url: str

    def token(self, audience: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "sub": "codex-ci",
            "team": "storefront",
            "on_behalf_of": "dana",
            "mode": "autonomous",
            "task": "T-9",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def approver_token(self, audience: str, user: str, **overrides: Any) -> str:
        """A human approver's token: ``sub`` and the admin scope, no agent claims."""
        agentless = {"team": None, "on_behalf_of": None, "mode": None, "task": None}
        return self.token(audience, **{"sub": user, "scope": "cedargate:admin", **agentless, **overrides})


def _serve_jwks(jwks: dict[str, Any]) -> ThreadingHTTPServer:
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex[:8]
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", "alg": "RS256"}
    server = _serve_jwks({"keys": [jwk]})
    try:
        yield Issuer(key, kid, f"http://127.0.0.1:{server.server_address[1]}/jwks.json")
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class HttpServer:
    runtime: Runtime
    base_url: str

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"


def start_http_server(config_path: Path) -> tuple[HttpServer, Any]:
    """A cedargate HTTP server on a socket bound before the config is read (so the URL is known)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    config_path.write_text(config_path.read_text().replace("RESOURCE_URL", base + "/mcp"))
    runtime = build_runtime(load_config(config_path, environ={}))
    app = build_http_app(build_server(runtime), runtime, "127.0.0.1", port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        runtime.close()

    return HttpServer(runtime, base), stop


def auth_toml(issuer: Issuer) -> str:
    return f'\n[auth]\nissuer = "{ISSUER}"\njwks_url = "{issuer.jwks_url}"\nresource_url = "RESOURCE_URL"\n'
