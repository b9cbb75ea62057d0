"""Operator edges: a revocation retires the agent's approvals, a mistyped id is refused, and the
admin API refuses a body it cannot read and tells a state conflict from a permission."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from tests.conftest import audit_events
from tests.governed_tree import governed_config
from tests.oauth_fixtures import HttpServer, Issuer, auth_toml, start_http_server
from tests.test_http_auth import _pending_delete

from cedargate.approvals import ApprovalQueue, ApprovalRequest, ApprovalStatus
from cedargate.cli import main
from cedargate.config import StoreConfig, load_config
from cedargate.git import git_text
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def governed(tree: Path, store_config: StoreConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The demo agent `codex-demo` (for `alice`), with acme/web in staging where deletes need an `sre`."""
    for name in ("CEDARGATE_AGENT", "CEDARGATE_TEAM", "CEDARGATE_USER", "CEDARGATE_MODE", "CEDARGATE_TASK"):
        monkeypatch.delenv(name, raising=False)  # the CLI reads the environment; the server here does not
    runtime = build_runtime(load_config(governed_config(tree, store_config), environ={}))
    yield runtime
    runtime.close()


def _cli(runtime: Runtime, *args: str) -> int:
    return main(["--config", str(runtime.config.base_dir / "cedargate.toml"), *args])


def _queue(runtime: Runtime) -> ApprovalQueue:
    assert runtime.store is not None
    return ApprovalQueue(runtime.store, runtime.config.approvals)


def _delete(branch: str) -> dict[str, str]:
    return {"repository": "acme/web", "branch": branch}


async def test_revoking_an_agent_expires_its_open_approvals_so_none_runs_after_reinstatement(
    governed: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = governed.config.repository("acme/web")
    assert repo is not None
    for branch in ("agent/granted", "agent/waiting"):
        git_text(repo.path, ["branch", branch])
    queue = _queue(governed)
    other = queue.open(
        ApprovalRequest(
            tool="repo_delete_branch",
            agent="codex-ci",
            team="storefront",
            on_behalf_of="dana",
            task="T-1",
            arguments=_delete("agent/x"),
            args_digest="0" * 64,
            resource="Repository::acme/web",
            environment="staging",
            policies=["staging-destructive-needs-sre"],
            reason="another agent's request",
            approver_groups=["sre"],
            request_event_id="e-other",
        )
    )
    async with Client(build_server(governed)) as client:
        for branch in ("agent/granted", "agent/waiting"):
            assert (await client.call_tool("repo_delete_branch", _delete(branch))).is_error is True
        granted, waiting = (e["approval"]["id"] for e in audit_events(governed.config.audit.path))
        assert _cli(governed, "approvals", "approve", granted, "--as", "bob") == 0
        capsys.readouterr()

        assert _cli(governed, "revoke", "agent", "codex-demo", "--as", "erin", "--reason", "leaked token") == 0
        assert capsys.readouterr().out == "agent codex-demo revoked by erin; 2 open approvals expired\n"
        assert {queue.get(granted).status, queue.get(waiting).status} == {ApprovalStatus.EXPIRED}
        assert queue.get(other.id).status is ApprovalStatus.PENDING  # another agent's request stands

        assert _cli(governed, "approvals", "approve", waiting, "--as", "bob") == 2
        assert f"approval `{waiting}` is expired" in capsys.readouterr().err
        assert _cli(governed, "reinstate", "agent", "codex-demo", "--as", "erin") == 0
        after = await client.call_tool("repo_delete_branch", _delete("agent/granted"))
    assert after.is_error is True and "awaits approval" in after.content[0].text  # type: ignore[union-attr]
    assert git_text(repo.path, ["branch", "--list", "agent/granted"]).strip() == "agent/granted"
    assert [e["outcome"] for e in audit_events(governed.config.audit.path)] == ["approval_required"] * 3
    assert queue.get(granted).status is ApprovalStatus.EXPIRED  # the new call asked afresh, under a new id


async def test_the_revoke_report_counts_expired_approvals_in_json_and_an_environment_has_none(
    governed: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(governed, "revoke", "agent", "codex-demo", "--as", "erin", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "kind": "agent",
        "subject": "codex-demo",
        "status": "revoked",
        "by": "erin",
        "approvals_expired": 0,
    }
    assert _cli(governed, "freeze", "--environment", "staging", "--as", "erin", "--json") == 0
    assert "approvals_expired" not in json.loads(capsys.readouterr().out)


async def test_revoking_an_id_that_differs_only_in_case_from_a_known_agent_is_refused(
    governed: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(build_server(governed)) as client:
        assert _cli(governed, "revoke", "agent", "Codex-Demo", "--as", "bob", "--reason", "stop it") == 2
        error = capsys.readouterr().err
        still = await client.call_tool("repo_list", {})
    assert "agent `Codex-Demo` is unknown, but `codex-demo`" in error and "nothing was revoked" in error
    assert still.is_error is False
    assert _cli(governed, "holds", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_a_case_variant_known_only_from_the_audit_log_is_refused_too(
    governed: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    over_http = build_runtime(
        load_config(governed.config.base_dir / "cedargate.toml", environ={"CEDARGATE_AGENT": "codex-ci"})
    )
    try:
        async with Client(build_server(over_http)) as client:
            assert (await client.call_tool("repo_list", {})).is_error is False
    finally:
        over_http.close()
    assert _cli(governed, "revoke", "agent", "Codex-CI", "--as", "bob") == 2
    assert "`codex-ci` (the audit log" in capsys.readouterr().err
    assert _cli(governed, "revoke", "agent", "codex-ci", "--as", "bob") == 0  # seen in the trail: known


async def test_revoking_a_never_seen_agent_needs_force(governed: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(governed, "revoke", "agent", "codex-dmeo", "--as", "bob") == 2
    error = capsys.readouterr().err
    assert "agent `codex-dmeo` was never seen" in error and "--force" in error and "nothing was revoked" in error
    assert _cli(governed, "revoke", "agent", "codex-dmeo", "--as", "bob", "--force", "--reason", "pre-empt") == 0
    assert capsys.readouterr().out.startswith("agent codex-dmeo revoked by bob")
    assert _cli(governed, "revoke", "agent", "Codex-Demo", "--as", "bob", "--force") == 0  # as written, on purpose


@pytest.fixture
def http(tree: Path, issuer: Issuer) -> Iterator[HttpServer]:
    path = governed_config(tree, StoreConfig(path=tree / "state.db"), extra=auth_toml(issuer))
    path.write_text(re.sub(r"\[principal\]\n(?:[a-z_]+ = .*\n)+", "", path.read_text()))
    server, stop = start_http_server(path)
    yield server
    stop()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "body is not JSON"),
        (b'["x"]', "body is an array, not a JSON object"),
        (b'{"note": ["x", 42]}', "`note` must be a string, not an array"),
        (b'{"note": 7}', "`note` must be a string, not a number"),
    ],
    ids=["malformed", "not-an-object", "note-a-list", "note-a-number"],
)
async def test_a_decision_with_a_body_the_api_cannot_read_is_refused_and_decides_nothing(
    http: HttpServer, issuer: Issuer, body: bytes, problem: str
) -> None:
    approval_id = await _pending_delete(http, issuer)
    token = issuer.approver_token(http.mcp_url, "bob")
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        url = f"{http.base_url}/admin/approvals/{approval_id}"
        refused = await client.post(f"{url}/approve", content=body, headers={"content-type": "application/json"})
        after = (await client.get(url)).json()
    assert refused.status_code == 400
    assert problem in refused.json()["error"] and "nothing was decided" in refused.json()["error"]
    assert after["status"] == "pending"


async def test_a_decided_approval_is_a_conflict_and_an_outsider_is_forbidden(http: HttpServer, issuer: Issuer) -> None:
    approval_id = await _pending_delete(http, issuer)
    url = f"{http.base_url}/admin/approvals/{approval_id}"

    async def post(user: str, verb: str, body: dict[str, object]) -> httpx2.Response:
        token = issuer.approver_token(http.mcp_url, user)
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            return await client.post(f"{url}/{verb}", json=body)

    first = await post("bob", "approve", {"note": None})  # a null note is no note
    again = await post("erin", "approve", {"note": "me too"})
    outsider = await post("mallory", "approve", {})
    assert (first.status_code, first.json()["status"], first.json()["note"]) == (200, "approved", None)
    assert again.status_code == 409 and "not pending" in again.json()["error"]
    assert outsider.status_code == 403 and "not a member of `sre`" in outsider.json()["error"]
