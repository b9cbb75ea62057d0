"""OWASP MCP: authentication and authorization over streamable HTTP with bearer JWTs.

A real issuer (an RSA key made here, its JWKS on loopback) and a real cedargate HTTP server.
Tokens that fail a check are refused before any tool call; an agent revoked mid-session is
refused on its next call, and that refusal is audited. The raw token never reaches a
handler, the audit log or the server's answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.adversarial.harness import Governed, spy_on
from tests.governed_tree import governed_config
from tests.oauth_fixtures import HttpServer, Issuer, auth_toml, start_http_server

from cedargate.audit.event import Outcome
from cedargate.config import StoreConfig
from cedargate.holds import HoldKind, Holds

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
READ = {"repository": "acme/web", "path": "README.md"}
WRITE = {"repository": "acme/web", "branch": "agent/auth", "path": "auth.txt", "content": "x"}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "repo_read_file", "arguments": READ}}


@pytest.fixture
def served(tree: Path, issuer: Issuer) -> Iterator[tuple[HttpServer, Governed]]:
    path = governed_config(tree, StoreConfig(path=tree / "state.db"), staging=False, extra=auth_toml(issuer))
    path.write_text(re.sub(r"\[principal\]\n(?:[a-z_]+ = .*\n)+", "", path.read_text()))
    server, stop = start_http_server(path)
    g = spy_on(server.runtime)
    yield server, g
    stop()


@asynccontextmanager
async def _client(server: HttpServer, token: str, mode: str = "legacy") -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http_client,
        Client(streamable_http_client(server.mcp_url, http_client=http_client), mode=mode) as client,
    ):
        yield client


def _text(result: Any) -> str:
    return str(result.content[0].text)


def _assert_token_never_kept(token: str, g: Governed, server: HttpServer, *, pasted: int = 0) -> None:
    """Neither the whole token nor its signature is in the audit file or in anything a handler got.

    The last ``pasted`` handler runs are left out: their agent put the token in an argument itself.
    """
    signature = token.rsplit(".", 1)[1]
    audit = server.runtime.config.audit.path
    text = audit.read_text() if audit.exists() else ""
    for secret in (token, signature) if signature else (token,):
        assert secret not in text
        for run in g.runs[: len(g.runs) - pasted]:
            assert secret not in repr(run.call), f"handler `{run.tool}` was given the bearer token"


def _forged(issuer: Issuer, audience: str) -> str:
    """Right claims, right key id, signed by a key the JWKS does not hold."""
    other = Issuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), issuer.kid, issuer.jwks_url)
    return other.token(audience)


REFUSED: dict[str, Any] = {
    "wrong-audience": lambda issuer, url: issuer.token("http://127.0.0.1:1/mcp"),
    "expired": lambda issuer, url: issuer.token(url, exp=int(time.time()) - 120, iat=int(time.time()) - 600),
    "another-key": _forged,
    "unsigned": lambda issuer, url: _unsigned(issuer.token(url)),
}


def _unsigned(token: str) -> str:
    """The same claims with ``alg: none`` and no signature."""
    import base64
    import json

    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    return f"{header}.{token.split('.')[1]}."


@pytest.mark.parametrize("kind", sorted(REFUSED))
async def test_a_token_that_fails_a_check_never_reaches_a_tool(
    served: tuple[HttpServer, Governed], issuer: Issuer, kind: str
) -> None:
    server, g = served
    token = REFUSED[kind](issuer, server.mcp_url)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        response = await client.post(
            server.mcp_url, json=CALL, headers={"Accept": "application/json, text/event-stream"}
        )
    assert response.status_code == 401
    assert "invalid_token" in response.headers.get("www-authenticate", "") or "invalid_token" in response.text
    assert token not in response.text
    assert g.runs == [] and g.events == []
    _assert_token_never_kept(token, g, server)


@pytest.mark.parametrize("mode", MODES)
async def test_a_valid_token_names_the_caller_but_is_never_passed_to_handlers_or_the_audit_log(
    served: tuple[HttpServer, Governed], issuer: Issuer, mode: str
) -> None:
    server, g = served
    token = issuer.token(server.mcp_url)
    async with _client(server, token, mode) as client:
        read = await client.call_tool("repo_read_file", READ)
        write = await client.call_tool("repo_write_file", WRITE)
        # An agent that pastes its own token into an argument: the trail keeps it redacted.
        pasted = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": f"Bearer {token}"})
    assert read.is_error is False and write.is_error is False, _text(write)
    assert pasted.is_error is True and token not in _text(pasted)
    assert [r.tool for r in g.runs] == ["repo_read_file", "repo_write_file", "repo_read_file"]
    assert {e.principal.agent for e in g.events} == {"codex-ci"}
    _assert_token_never_kept(token, g, server, pasted=1)


async def test_an_agent_revoked_mid_session_is_refused_audited_and_runs_nothing(
    served: tuple[HttpServer, Governed], issuer: Issuer
) -> None:
    server, g = served
    token = issuer.token(server.mcp_url)
    async with _client(server, token) as client:
        before = await client.call_tool("repo_read_file", READ)
        Holds(server.runtime.store).put(HoldKind.AGENT, "codex-ci", "olga", "token leaked")
        read = await client.call_tool("repo_read_file", READ)
        write = await client.call_tool("repo_write_file", WRITE)
        aws = await client.call_tool("aws_sts_get_caller_identity", {})
    assert before.is_error is False
    for refused in (read, write, aws):
        assert refused.is_error is True
        assert "agent `codex-ci` was revoked by `olga`" in _text(refused) and "(audit event " in _text(refused)
    assert [r.tool for r in g.runs] == ["repo_read_file"], "a revoked agent's call reached a handler"
    assert [e.outcome for e in g.events] == [Outcome.SUCCEEDED] + [Outcome.REVOKED] * 3
    assert all(e.principal.agent == "codex-ci" for e in g.events)
    _assert_token_never_kept(token, g, server)
