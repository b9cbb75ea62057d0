"""Streamable HTTP as an OAuth 2.1 resource server: bearer JWTs name the principal of each call."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.conftest import audit_events
from tests.governed_tree import governed_config
from tests.oauth_fixtures import ISSUER, HttpServer, Issuer, auth_toml, start_http_server

from cedargate.config import StoreConfig

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
READ = {"repository": "acme/web", "path": "README.md"}


@pytest.fixture
def http(tree: Path, issuer: Issuer) -> Iterator[HttpServer]:
    # A database copy of the trail too, so the admin API has a secondary sink to report on.
    sink = '\n[[audit.sinks]]\nkind = "database"\n'
    path = governed_config(tree, StoreConfig(path=tree / "state.db"), extra=auth_toml(issuer) + sink)
    # No [principal]: over HTTP with auth, every caller is named by its token alone.
    path.write_text(re.sub(r"\[principal\]\n(?:[a-z_]+ = .*\n)+", "", path.read_text()))
    assert "[principal]" not in path.read_text()
    server, stop = start_http_server(path)
    yield server
    stop()


@asynccontextmanager
async def _client(server: HttpServer, token: str | None, mode: str = "legacy") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http_client,
        Client(streamable_http_client(server.mcp_url, http_client=http_client), mode=mode) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", MODES)
async def test_a_valid_token_names_the_principal_that_policies_and_the_audit_trail_see(
    http: HttpServer, issuer: Issuer, mode: str
) -> None:
    async with _client(http, issuer.token(http.mcp_url), mode) as client:
        result = await client.call_tool("repo_read_file", READ)
    assert result.is_error is False
    [event] = audit_events(http.runtime.config.audit.path)
    assert event["principal"] == {
        "agent": "codex-ci",
        "team": "storefront",
        "on_behalf_of": "dana",
        "mode": "autonomous",
    }
    assert event["task"] == "T-9"


async def test_a_request_without_a_token_gets_401_pointing_at_the_resource_metadata(http: HttpServer) -> None:
    async with httpx2.AsyncClient() as client:
        response = await client.post(http.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        metadata_url = http.base_url + "/.well-known/oauth-protected-resource/mcp"
        assert f'resource_metadata="{metadata_url}"' in challenge
        metadata = (await client.get(metadata_url)).json()
    assert metadata["resource"] == http.mcp_url
    assert metadata["authorization_servers"] == [ISSUER]


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "http://127.0.0.1:1/mcp"},
        {"iss": "https://elsewhere.test"},
        {"exp": int(time.time()) - 120},
        {"nbf": int(time.time()) + 600},
        {"team": None},
    ],
    ids=["another-audience", "another-issuer", "expired", "not-yet-valid", "no-team-claim"],
)
async def test_tokens_that_fail_a_check_are_refused_before_any_call(
    http: HttpServer, issuer: Issuer, overrides: dict[str, object]
) -> None:
    token = issuer.token(http.mcp_url, **overrides)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.post(http.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert audit_events(http.runtime.config.audit.path) == []


async def test_a_token_signed_by_another_key_is_refused(http: HttpServer, issuer: Issuer) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    forged = Issuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), issuer.kid, issuer.jwks_url)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {forged.token(http.mcp_url)}"}) as client:
        response = await client.post(http.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401


async def test_approvers_decide_over_the_admin_api_with_their_own_token(http: HttpServer, issuer: Issuer) -> None:
    repo = http.runtime.config.repository("acme/web")
    assert repo is not None
    from cedargate.git import git_text

    git_text(repo.path, ["branch", "agent/old"])
    delete = {"repository": "acme/web", "branch": "agent/old"}
    async with _client(http, issuer.token(http.mcp_url)) as client:
        waiting = await client.call_tool("repo_delete_branch", delete)
    assert waiting.is_error is True
    [event] = audit_events(http.runtime.config.audit.path)
    approval_id = event["approval"]["id"]
    admin = http.base_url + f"/admin/approvals/{approval_id}"

    async def post(user: str, verb: str) -> httpx2.Response:
        token = issuer.token(http.mcp_url, sub=user)
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            return await client.post(f"{admin}/{verb}", json={"note": "checked"})

    async with httpx2.AsyncClient() as anonymous:
        assert (await anonymous.get(http.base_url + "/admin/approvals")).status_code == 401
    refused = await post("dana", "approve")
    assert refused.status_code == 403
    assert "nobody approves their own request" in refused.json()["error"]
    granted = await post("bob", "approve")
    assert granted.status_code == 200 and granted.json()["status"] == "approved"
    async with _client(http, issuer.token(http.mcp_url)) as client:
        ran = await client.call_tool("repo_delete_branch", delete)
    assert ran.is_error is False
    assert git_text(repo.path, ["branch", "--list", "agent/old"]) == ""


async def test_an_agent_revoked_mid_session_is_refused_although_its_token_is_still_valid(
    http: HttpServer, issuer: Issuer
) -> None:
    from cedargate.holds import HoldKind, Holds

    async with _client(http, issuer.token(http.mcp_url)) as client:
        before = await client.call_tool("repo_read_file", READ)
        Holds(http.runtime.store).put(HoldKind.AGENT, "codex-ci", "olga", "token leaked")
        after = await client.call_tool("repo_read_file", READ)
    assert before.is_error is False
    assert after.is_error is True
    assert "agent `codex-ci` was revoked" in after.content[0].text  # type: ignore[union-attr]


async def test_the_admin_api_reports_each_secondary_audit_sink_to_a_token_holder(
    http: HttpServer, issuer: Issuer
) -> None:
    sinks_url = http.base_url + "/admin/audit/sinks"
    async with _client(http, issuer.token(http.mcp_url)) as client:
        for _ in range(2):
            assert (await client.call_tool("repo_read_file", READ)).is_error is False
    http.runtime.audit.flush()
    async with httpx2.AsyncClient() as anonymous:
        assert (await anonymous.get(sinks_url)).status_code == 401
    token = issuer.token(http.mcp_url, sub="olga")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as admin:
        response = await admin.get(sinks_url)
    assert response.status_code == 200
    assert response.json() == {
        "sinks": [{"name": "database", "delivered": 2, "pending": 0, "failures": 0, "lost": 0, "last_error": None}]
    }
