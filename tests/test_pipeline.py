"""The governed pipeline through a real in-process MCP client session, in both protocol eras."""

from __future__ import annotations

from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from tests.conftest import audit_events

from cedargate.audit.verify import verify_log
from cedargate.config import load_config
from cedargate.git import git_text
from cedargate.provenance import ProvenanceNode, trace
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_allowed_read_returns_the_file_and_one_succeeded_event(runtime: Runtime, mode: str) -> None:
    async with Client(build_server(runtime), mode=mode) as client:
        result = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    assert result.is_error is False
    assert result.structured_content is not None
    assert result.structured_content["content"].startswith("# acme/web")
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "succeeded"
    assert event["decision"]["effect"] == "allow"
    assert [p["id"] for p in event["decision"]["policies"]] == ["reads-allowed"]
    assert event["environment"] == "dev"
    assert event["resource"] == {"type": "Repository", "id": "acme/web"}
    assert event["manifest_hash"] == runtime.catalog.tools["repo_read_file"].content_hash


async def test_forbidden_write_is_denied_with_policy_and_reason_and_nothing_is_written(
    runtime: Runtime, mode: str
) -> None:
    repo = runtime.config.repository("acme/payments")
    assert repo is not None
    async with Client(build_server(runtime), mode=mode) as client:
        result = await client.call_tool(
            "repo_write_file",
            {"repository": "acme/payments", "branch": "agent/x", "path": "a.txt", "content": "x"},
        )
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert "prod-writes-forbidden" in text
    assert "release pipeline" in text
    assert git_text(repo.path, ["branch", "--list", "agent/x"]) == ""
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "denied"
    assert event["decision"]["policies"][0]["id"] == "prod-writes-forbidden"
    assert event["event_id"] in text


async def test_bad_arguments_name_the_field_run_nothing_and_are_audited(runtime: Runtime, mode: str) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    async with Client(build_server(runtime), mode=mode) as client:
        result = await client.call_tool(
            "repo_write_file", {"repository": "acme/web", "branch": "agent/y", "path": 7, "content": "x"}
        )
    assert result.is_error is True
    assert "field `path`" in result.content[0].text  # type: ignore[union-attr]
    assert git_text(repo.path, ["branch", "--list", "agent/y"]) == ""
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "invalid_arguments"
    assert event["decision"] is None


async def test_missing_and_unknown_arguments_are_named(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        missing = await client.call_tool("repo_read_file", {"repository": "acme/web"})
        extra = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md", "mode": "x"})
    assert "field `path` is required" in missing.content[0].text  # type: ignore[union-attr]
    assert "field `mode` is not accepted" in extra.content[0].text  # type: ignore[union-attr]
    assert [e["outcome"] for e in audit_events(runtime.config.audit.path)] == ["invalid_arguments"] * 2


async def test_unknown_tool_and_unknown_repository_are_refused_and_audited(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        with pytest.raises(MCPError) as unknown:  # a protocol error, as MCP has it for an unknown name
            await client.call_tool("shell_exec", {"cmd": "id"})
        no_repo = await client.call_tool("repo_read_file", {"repository": "acme/secret", "path": "x"})
    assert unknown.value.code == types.INVALID_PARAMS and "unknown tool `shell_exec`" in unknown.value.message
    assert no_repo.is_error and "`acme/secret` is not configured" in no_repo.content[0].text  # type: ignore[union-attr]
    outcomes = [e["outcome"] for e in audit_events(runtime.config.audit.path)]
    assert outcomes == ["unknown_tool", "invalid_arguments"]


async def test_allowed_write_commits_with_provenance_trailers(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(
            "repo_write_file",
            {
                "repository": "acme/web",
                "branch": "agent/t",
                "path": "src/new.py",
                "content": "X = 1\n",
                "message": "Add X",
            },
        )
    assert result.is_error is False
    [event] = audit_events(runtime.config.audit.path)
    message = git_text(repo.path, ["log", "-1", "--format=%B", "agent/t"])
    assert message.startswith("Add X")
    assert "Cedargate-Agent: codex-demo" in message
    assert "Cedargate-On-Behalf-Of: alice" in message
    assert f"Cedargate-Audit-Event: {event['event_id']}" in message
    assert git_text(repo.path, ["show", "agent/t:src/new.py"]) == "X = 1"
    # The working tree and main are untouched.
    assert git_text(repo.path, ["status", "--porcelain"]) == ""
    assert git_text(repo.path, ["rev-parse", "main"]) == git_text(repo.path, ["rev-parse", "agent/t~1"])


async def test_approval_required_is_distinct_from_deny_and_runs_nothing(tree: Path) -> None:
    config_path = tree / "cedargate.toml"
    # Move acme/web to staging, where destructive changes need an SRE's approval.
    config_path.write_text(
        config_path.read_text().replace(
            'environment = "dev"\nowner_team = "storefront"', 'environment = "staging"\nowner_team = "storefront"'
        )
    )
    runtime = build_runtime(load_config(config_path, environ={}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.environment == "staging"
    git_text(repo.path, ["branch", "agent/old"])
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool("repo_delete_branch", {"repository": "acme/web", "branch": "agent/old"})
    finally:
        runtime.close()
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert "awaits approval by `sre`" in text
    # The demo config names no approvers: the agent is told nobody can decide, not to ask a member of `sre`.
    assert "but nobody can decide it: `[approvals.groups]` in the config names no member of `sre`" in text
    assert "cedargate approvals approve" not in text
    assert git_text(repo.path, ["branch", "--list", "agent/old"]) != ""
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "approval_required"
    assert event["decision"]["effect"] == "approval_required"
    assert event["decision"]["policies"][0]["approval_group"] == "sre"


async def test_every_call_leaves_exactly_one_event_and_the_chain_verifies(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        await client.call_tool("aws_sts_get_caller_identity", {})
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": 1})
        await client.call_tool("repo_delete_branch", {"repository": "acme/payments", "branch": "agent/x"})
    events = audit_events(runtime.config.audit.path)
    assert [e["tool"] for e in events] == [
        "repo_read_file",
        "aws_sts_get_caller_identity",
        "repo_read_file",
        "repo_delete_branch",
    ]
    assert len({e["event_id"] for e in events}) == 4
    assert verify_log(runtime.config.audit.path).ok


async def test_a_later_write_links_the_earlier_one_and_lists_only_newer_reads(runtime: Runtime) -> None:
    def write(branch: str) -> dict[str, str]:
        return {"repository": "acme/web", "branch": branch, "path": "a.txt", "content": branch}

    async with Client(build_server(runtime)) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        await client.call_tool("repo_write_file", write("agent/one"))
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "src/app.py"})
        await client.call_tool("repo_write_file", write("main"))  # refused: it still records its sources
        await client.call_tool("repo_write_file", write("agent/two"))
    read_1, write_1, read_2, refused, write_2 = audit_events(runtime.config.audit.path)
    assert refused["outcome"] == "denied"
    assert write_1["context_sources"] == [read_1["event_id"]]
    assert refused["context_sources"] == [write_1["event_id"], read_2["event_id"]]
    assert write_2["context_sources"] == [refused["event_id"]]
    # Following the links finds every read the session made before the last write.
    events = audit_events(runtime.config.audit.path)
    reached = set()

    def walk(node: ProvenanceNode) -> None:
        reached.add(node.event_id)
        for source in node.sources:
            walk(source)

    walk(trace(write_2["event_id"], events))
    assert {read_1["event_id"], read_2["event_id"]} <= reached


async def test_a_write_records_the_reads_of_its_session_as_context_sources(runtime: Runtime, mode: str) -> None:
    async with Client(build_server(runtime), mode=mode) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "missing.txt"})
        await client.call_tool(
            "repo_write_file", {"repository": "acme/web", "branch": "agent/p", "path": "a.txt", "content": "a"}
        )
    read_ok, read_failed, write = audit_events(runtime.config.audit.path)
    assert read_failed["outcome"] == "failed"
    assert write["outcome"] == "succeeded"
    assert write["context_sources"] == [read_ok["event_id"]]
    assert read_ok["context_sources"] is None


async def test_a_tools_list_cursor_this_server_never_gave_is_an_invalid_params_error(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        assert (await client.list_tools()).next_cursor is None  # one page: nothing to come back with
        with pytest.raises(MCPError) as refused:
            await client.list_tools(cursor="bogus")
    assert refused.value.code == types.INVALID_PARAMS and "invalid cursor `bogus`" in refused.value.message
