"""Cedar decisions: fail closed on evaluation errors, approval-required kept distinct from deny."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from tests.conftest import audit_events

from cedargate.config import load_config
from cedargate.decision import Effect
from cedargate.git import git_text
from cedargate.identity import Principal
from cedargate.request_context import build_context
from cedargate.resolve import resolve_call
from cedargate.runtime import build_runtime
from cedargate.server import build_server
from cedargate.session import SessionState

OVERFLOWING_FORBID = """
@id("forbid-that-errors")
@reason("forbids writes, but its condition overflows a Long")
forbid (principal, action == Action::"repo_write_file", resource)
when { context.session.call_count + 9223372036854775807 > 0 };
"""


@pytest.mark.anyio
async def test_a_forbid_whose_evaluation_errors_denies_instead_of_being_skipped(tree: Path) -> None:
    (tree / "policies/dev.cedar").write_text((tree / "policies/dev.cedar").read_text() + OVERFLOWING_FORBID)
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={}))
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool(
                "repo_write_file", {"repository": "acme/web", "branch": "agent/err", "path": "a", "content": "a"}
            )
    finally:
        runtime.close()
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert "fails closed" in text
    assert "forbid-that-errors (dev.cedar:" in text
    assert git_text(tree / "repos/web", ["branch", "--list", "agent/err"]) == ""
    [event] = audit_events(tree / "audit.jsonl")
    assert event["outcome"] == "denied"
    assert event["decision"]["effect"] == "deny"
    assert "overflow" in event["decision"]["errors"][0]


@pytest.mark.anyio
async def test_with_no_permit_that_applies_the_call_is_denied_by_default(tree: Path) -> None:
    config_path = tree / "cedargate.toml"
    config_path.write_text(
        config_path.read_text()
        + '\n[[repositories]]\nname = "acme/qa"\npath = "repos/web"\nenvironment = "qa"\nowner_team = "storefront"\n'
    )
    runtime = build_runtime(load_config(config_path, environ={}))
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool(
                "repo_write_file", {"repository": "acme/qa", "branch": "agent/qa", "path": "a", "content": "a"}
            )
    finally:
        runtime.close()
    assert result.is_error is True
    assert "no policy permits this call (default deny)" in result.content[0].text  # type: ignore[union-attr]
    [event] = audit_events(tree / "audit.jsonl")
    assert event["decision"] == {"effect": "deny", "policies": [], "errors": []}
    assert event["environment"] == "qa"


def test_a_long_lived_authorizer_keeps_a_bounded_number_of_entity_graphs(tree: Path) -> None:
    """A server meets a new principal with every task; it must not keep a graph for each forever."""
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={}))
    try:
        manifest = runtime.catalog.tools["repo_read_file"]
        args = {"repository": "acme/web", "path": "README.md"}
        resource, args = resolve_call(manifest, args, runtime.config)
        authorizer = runtime.snapshots.current.authorizer.full
        decisions = set()
        for n in range(300):
            who = Principal(
                agent="codex-demo", team="storefront", on_behalf_of="alice", mode="autonomous", task=f"t{n}"
            )
            context = build_context(who, manifest, resource, args, SessionState(), 1)
            decisions.add(authorizer.authorize(who, manifest.name, resource, context).effect)
        assert decisions == {Effect.ALLOW}
        assert len(authorizer._entities_by_principal) <= 256
    finally:
        runtime.close()
