"""Slicing the policy set by scope never changes a decision, its reasons or its errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import cedarpy
import pytest

from cedargate import authorize as authorize_module
from cedargate.authorize import Authorizer
from cedargate.config import load_config
from cedargate.decision import Effect
from cedargate.identity import Principal
from cedargate.policy_slice import scope_may_match
from cedargate.request_context import build_context
from cedargate.resolve import resolve_call
from cedargate.runtime import build_runtime
from cedargate.session import SessionState

EXTRA_POLICIES = """
@id("agent-only")
@reason("one agent may read in prod")
permit (principal == Agent::"codex-demo", action == Action::"repo_read_file", resource in Environment::"prod");

@id("team-writes")
@reason("the storefront team writes to its repository")
permit (principal in Team::"storefront", action in [Action::"repo_write_file", Action::"risk:destructive"],
        resource == Repository::"acme/web") when { context.args.branch like "agent/*" };

@id("repo-type")
@reason("repositories of payments need approval to delete")
@approval("sre")
forbid (principal is Agent, action in Action::"risk:destructive", resource is Repository in Environment::"dev")
unless { context.approval.granted };

@id("optional-arg")
@reason("a condition on an optional argument")
forbid (principal, action == Action::"repo_read_file", resource is Repository)
when { context.args has ref && context.args.ref == "boom" && resource.owner_team == Team::"nobody" };

@id("other-agent")
@reason("another agent entirely")
forbid (principal == Agent::"someone-else", action, resource);
"""

ARGS = {
    "repo_read_file": {"path": "README.md", "ref": "boom"},
    "repo_write_file": {"branch": "agent/x", "path": "a.txt", "content": "x"},
    "repo_delete_branch": {"branch": "agent/x"},
}


@pytest.mark.parametrize("mode", ["interactive", "autonomous"])
def test_sliced_decisions_equal_whole_set_decisions(tree: Path, mode: str) -> None:
    (tree / "policies" / "extra.cedar").write_text(EXTRA_POLICIES)
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={"CEDARGATE_MODE": mode}))
    try:
        authorizer = runtime.snapshots.current.authorizer.full
        assert isinstance(authorizer, Authorizer)
        policies = runtime.policies
        principals = [
            runtime.principal,
            Principal(agent="someone-else", team="payments", on_behalf_of="bob", mode=mode, task="t"),
        ]
        compared = 0
        for principal, (tool, extra), repo in itertools.product(
            principals, ARGS.items(), ["acme/web", "acme/payments"]
        ):
            manifest = runtime.catalog.tools[tool]
            args = {"repository": repo, **extra}
            resource, args = resolve_call(manifest, args, runtime.config)
            context = build_context(principal, manifest, resource, args, SessionState(), 1)
            sliced = authorizer.authorize(principal, tool, resource, context)
            entities, _ = authorizer._entities_for(principal)
            whole = cedarpy.is_authorized(
                {
                    "principal": {"type": "Agent", "id": principal.agent},
                    "action": {"type": "Action", "id": tool},
                    "resource": resource.ref.to_json(),
                    "context": context,
                },
                policies.policies,
                entities,
                policies.schema,
            )
            assert sliced == authorizer._decision_from(whole), (principal.agent, tool, repo)
            compared += 1
        assert compared == 12
    finally:
        runtime.close()


def test_unknown_scope_shapes_keep_the_policy() -> None:
    uid = ("Agent", "a")
    assert scope_may_match({"op": "==", "slot": "?principal"}, uid, frozenset({uid}))
    assert scope_may_match({"op": "something-new"}, uid, frozenset({uid}))
    assert not scope_may_match({"op": "==", "entity": {"type": "Agent", "id": "b"}}, uid, frozenset({uid}))
    assert not scope_may_match({"op": "is", "entity_type": "User"}, uid, frozenset({uid}))


def test_a_kept_decision_serves_only_its_scope_and_starts_over_with_the_slices(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tree / "policies" / "extra.cedar").write_text(EXTRA_POLICIES)
    monkeypatch.setattr(authorize_module, "_MAX_SLICES", 2)
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={}))
    try:
        authorizer = runtime.snapshots.current.authorizer.full
        assert isinstance(authorizer, Authorizer)
        manifest = runtime.catalog.tools["repo_read_file"]
        other = Principal(agent="someone-else", team="payments", on_behalf_of="bob", mode="interactive", task="t")

        def effect(principal: Principal, repo: str) -> Effect:
            args = {"repository": repo, "path": "README.md"}
            resource, args = resolve_call(manifest, args, runtime.config)
            context = build_context(principal, manifest, resource, args, SessionState(), 1)
            return authorizer.authorize(principal, manifest.name, resource, context).effect

        for _ in range(2):  # the second round is answered from the kept decisions
            assert [effect(runtime.principal, "acme/web"), effect(other, "acme/web")] == [Effect.ALLOW, Effect.DENY]
        assert len(authorizer._decisions) == 2
        assert effect(runtime.principal, "acme/payments") is Effect.ALLOW  # a third scope: slices start over
        assert len(authorizer._decisions) == 1
        assert effect(other, "acme/web") is Effect.DENY
    finally:
        runtime.close()
