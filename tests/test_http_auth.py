"""Streamable HTTP as an OAuth 2.1 resource server: bearer JWTs name the principal of each call."""

from __future__ import annotations

import logging
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
from tests.raw_wire import HANDSHAKE

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
        token = issuer.approver_token(http.mcp_url, user)
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
    token = issuer.approver_token(http.mcp_url, "olga")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as admin:
        response = await admin.get(sinks_url)
    assert response.status_code == 200
    assert response.json() == {
        "sinks": [{"name": "database", "delivered": 2, "pending": 0, "failures": 0, "lost": 0, "last_error": None}]
    }


async def _pending_delete(http: HttpServer, issuer: Issuer) -> str:
    """An approval the default agent waits for (deleting `agent/old`), by its id."""
    from cedargate.git import git_text

    repo = http.runtime.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    async with _client(http, issuer.token(http.mcp_url)) as client:
        waiting = await client.call_tool("repo_delete_branch", {"repository": "acme/web", "branch": "agent/old"})
    assert waiting.is_error is True
    approval_id: str = audit_events(http.runtime.config.audit.path)[-1]["approval"]["id"]
    return approval_id


async def _approve(http: HttpServer, approval_id: str, token: str) -> httpx2.Response:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        return await client.post(f"{http.base_url}/admin/approvals/{approval_id}/approve", json={"note": "ok"})


async def test_an_agents_own_token_cannot_approve_although_its_sub_is_an_approvers_name(
    http: HttpServer, issuer: Issuer
) -> None:
    approval_id = await _pending_delete(http, issuer)
    # bob is in `sre`; an agent whose token says sub=bob runs tools as `bob`, and must not decide as bob.
    refused = await _approve(http, approval_id, issuer.token(http.mcp_url, sub="bob"))
    assert refused.status_code == 403
    assert refused.json() == {"error": "insufficient_scope", "error_description": "Required scope: cedargate:admin"}
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert http.runtime.store is not None
    from cedargate.approvals import ApprovalQueue

    queue = ApprovalQueue(http.runtime.store, http.runtime.config.approvals)
    assert queue.get(approval_id).status == "pending"


async def test_a_delegated_token_cannot_use_the_admin_api_even_with_the_admin_scope(
    http: HttpServer, issuer: Issuer
) -> None:
    approval_id = await _pending_delete(http, issuer)
    token = issuer.approver_token(http.mcp_url, "bob", act={"sub": "codex-ci"})
    refused = await _approve(http, approval_id, token)
    assert refused.status_code == 403
    assert "delegated token (`act` claim)" in refused.json()["error_description"]


async def test_the_admin_api_refuses_a_token_without_the_required_scope_whatever_it_holds_on_mcp(
    tree: Path, issuer: Issuer
) -> None:
    extra = auth_toml(issuer) + 'required_scopes = ["mcp:tools"]\nadmin_scopes = ["approvals:decide"]\n'
    path = governed_config(tree, StoreConfig(path=tree / "state.db"), extra=extra)
    server, stop = start_http_server(path)
    try:
        listing = server.base_url + "/admin/approvals?status=all"
        for scope, status in [("mcp:tools", 403), ("cedargate:admin", 403), ("approvals:decide", 200)]:
            token = issuer.approver_token(server.mcp_url, "bob", scope=scope)
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
                response = await client.get(listing)
            assert response.status_code == status, (scope, response.text)
            if status == 403:
                assert response.json()["error_description"] == "Required scope: approvals:decide"
    finally:
        stop()


async def test_an_approver_token_with_only_sub_and_the_admin_scope_works_on_admin_but_not_on_mcp(
    http: HttpServer, issuer: Issuer
) -> None:
    token = issuer.approver_token(http.mcp_url, "bob")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        assert (await client.get(http.base_url + "/admin/approvals")).status_code == 200
        on_mcp = await client.post(http.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert on_mcp.status_code == 401
    assert on_mcp.json()["error_description"].startswith("token claim `team` (team) is missing")
    assert "resource_metadata=" in on_mcp.headers["www-authenticate"]


async def test_an_admin_refusal_carries_the_resource_metadata_challenge(http: HttpServer) -> None:
    async with httpx2.AsyncClient() as anonymous:
        response = await anonymous.get(http.base_url + "/admin/approvals")
    assert response.status_code == 401
    metadata_url = http.base_url + "/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sub": ""}, "token claim `sub` (agent) is ``, not an id"),
        ({"team": "   "}, "token claim `team` (team) is `   `, not an id"),
        ({"on_behalf_of": "dana\n"}, "token claim `on_behalf_of` (on_behalf_of) is `dana\\n`, not an id"),
        ({"sub": "auth0|agent-7"}, "token claim `sub` (agent) is `auth0|agent-7`, not an id"),
        ({"task": ["T-1"]}, 'token claim `task` (task) is `["T-1"]`, not an id'),
    ],
    ids=["empty-sub", "blank-team", "control-character", "not-revocable", "not-a-string"],
)
async def test_claims_that_are_no_ids_are_refused_naming_the_claim_and_nothing_is_audited(
    http: HttpServer, issuer: Issuer, overrides: dict[str, object], reason: str
) -> None:
    token = issuer.token(http.mcp_url, **overrides)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.post(http.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.json()["error_description"].startswith(reason)
    assert audit_events(http.runtime.config.audit.path) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"aud": "http://127.0.0.1:1/mcp"}, "audience (`aud`) is not"),
        ({"iss": "https://elsewhere.test"}, "issuer (`iss`) is not `https://issuer.test`"),
    ],
    ids=["expired", "audience", "issuer"],
)
async def test_a_refused_token_is_logged_as_a_warning_with_the_reason(
    http: HttpServer, issuer: Issuer, caplog: pytest.LogCaptureFixture, overrides: dict[str, object], reason: str
) -> None:
    token = issuer.token(http.mcp_url, **overrides)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.post(http.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    warnings = [r.getMessage() for r in caplog.records if r.name == "cedargate.oauth" and r.levelno >= logging.WARNING]
    assert any(reason in message for message in warnings), warnings


INITIALIZE = HANDSHAKE[0]
MCP_HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}


@pytest.mark.parametrize(
    ("claim", "seconds", "accepted"),
    [("nbf", 15, True), ("exp", -15, True), ("nbf", 90, False), ("exp", -90, False)],
    ids=["nbf-15s-ahead", "exp-15s-past", "nbf-90s-ahead", "exp-90s-past"],
)
async def test_clock_leeway_is_the_same_for_nbf_and_exp(
    http: HttpServer, issuer: Issuer, claim: str, seconds: int, accepted: bool
) -> None:
    token = issuer.token(http.mcp_url, **{claim: int(time.time()) + seconds})
    async with httpx2.AsyncClient(headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}) as client:
        response = await client.post(http.mcp_url, json=INITIALIZE)
    assert (response.status_code == 200) is accepted, response.text


async def _open_session(client: httpx2.AsyncClient, url: str, token: str) -> str:
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
    opened = await client.post(url, json=INITIALIZE, headers=headers)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await client.post(url, json=initialized, headers={**headers, "mcp-session-id": session})
    return session


async def _call_in(client: httpx2.AsyncClient, url: str, token: str, session: str) -> httpx2.Response:
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "repo_read_file", "arguments": READ}}
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}", "mcp-session-id": session}
    return await client.post(url, json=call, headers=headers)


async def test_a_token_of_another_principal_with_the_same_sub_cannot_use_or_end_a_session(
    http: HttpServer, issuer: Issuer
) -> None:
    owner = issuer.token(http.mcp_url)
    other = issuer.token(http.mcp_url, on_behalf_of="erin", team="payments", task="T-C", mode="interactive")
    async with httpx2.AsyncClient(timeout=30) as client:
        session = await _open_session(client, http.mcp_url, owner)
        assert (await _call_in(client, http.mcp_url, owner, session)).status_code == 200
        assert (await _call_in(client, http.mcp_url, other, session)).status_code == 404
        headers = {**MCP_HEADERS, "authorization": f"Bearer {other}", "mcp-session-id": session}
        assert (await client.delete(http.mcp_url, headers=headers)).status_code == 404
        assert (await _call_in(client, http.mcp_url, owner, session)).status_code == 200
    events = audit_events(http.runtime.config.audit.path)
    assert [e["principal"]["on_behalf_of"] for e in events] == ["dana", "dana"]
    assert {e["session_id"] for e in events} == {session}


@pytest.mark.parametrize("field", ["team", "mode"])
async def test_2026_calls_of_principals_that_differ_only_in_team_or_mode_do_not_share_a_session(
    http: HttpServer, issuer: Issuer, field: str
) -> None:
    other = {"team": "payments", "mode": "interactive"}[field]
    for token in (issuer.token(http.mcp_url), issuer.token(http.mcp_url, **{field: other})):
        async with _client(http, token, "2026-07-28") as client:
            assert (await client.call_tool("repo_read_file", READ)).is_error is False
    first, second = audit_events(http.runtime.config.audit.path)
    assert first["session_id"] != second["session_id"]
