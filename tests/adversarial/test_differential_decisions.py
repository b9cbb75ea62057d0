"""The real Authorizer against the reference model, on generated policy sets and requests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from unittest.mock import patch

import cedarpy
from hypothesis import example, given
from hypothesis import strategies as st
from tests.adversarial.harness import FUZZ, principal
from tests.adversarial.reference import CONDITION_TEXT, RefPolicy, RefRequest, decide
from tests.adversarial.schema_strategy import from_schema
from tests.conftest import ROOT, shipped_check

from cedargate.authorize import Authorizer
from cedargate.catalog import ToolCatalog, load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.config import AwsAccountConfig, AwsConfig, Config, RepositoryConfig
from cedargate.decision import Effect
from cedargate.policy_set import PolicySet, load_policy_set
from cedargate.request_context import build_context
from cedargate.resolve import resolve_call
from cedargate.session import SessionState

ENVIRONMENTS = ("dev", "staging", "prod")


def _config() -> Config:
    repos = tuple(
        RepositoryConfig(name=f"acme/{env}", path=Path("/nonexistent"), environment=env, owner_team="storefront")
        for env in ENVIRONMENTS
    )
    accounts = tuple(AwsAccountConfig(id=f"{n:012d}", environment=env) for n, env in enumerate(ENVIRONMENTS, start=1))
    return Config(repositories=repos, aws=AwsConfig(mode="sandbox", accounts=accounts))


CATALOG: ToolCatalog = load_catalog(ROOT / "tools", check=shipped_check())
CONFIG = _config()


def _policy_set(tmp_path: Path, text: str, schema: dict[str, Any]) -> PolicySet:
    """``text`` as the only policy file of a fresh folder, loaded and validated."""
    folder = tmp_path / "policies"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "generated.cedar").write_text(text)
    return load_policy_set(folder, schema)


@st.composite
def policies(draw: st.DrawFn) -> list[RefPolicy]:
    tools = sorted(CATALOG.tools)
    out = []
    for index in range(draw(st.integers(0, 5))):
        scope = draw(st.sampled_from(["any", "tool", "risk"]))
        effect = draw(st.sampled_from(["permit", "forbid"]))
        out.append(
            RefPolicy(
                policy_id=f"p{index}",
                effect=effect,
                tool=draw(st.sampled_from(tools)) if scope == "tool" else None,
                risk=draw(st.sampled_from(sorted({m.risk.value for m in CATALOG}))) if scope == "risk" else None,
                environment=draw(st.none() | st.sampled_from(ENVIRONMENTS)),
                condition=draw(st.sampled_from(sorted(CONDITION_TEXT))),  # type: ignore[arg-type]
                approval=draw(st.sampled_from([None, "sre", "sre"])) if effect == "forbid" else None,
            )
        )
    return out


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    manifest = draw(st.sampled_from(list(CATALOG)))
    args: dict[str, Any] = draw(from_schema(manifest.input_schema))
    if manifest.resource.kind == "repository":
        args[manifest.resource.argument] = draw(st.sampled_from([r.name for r in CONFIG.repositories]))
    else:
        args[manifest.resource.argument] = draw(st.sampled_from([a.id for a in CONFIG.aws.accounts]))
        args.pop("region", None)  # a region AWS knows: the configured one (resolve checks it)
    return manifest.name, args, draw(st.sampled_from(["interactive", "autonomous"]))


READ_REQUEST = ("repo_read_file", {"repository": "acme/dev", "path": "README.md"}, "interactive")
PERMIT_ALL = RefPolicy("p0", "permit", None, None, None, "none", None)
FORBID_UNLESS_APPROVED = RefPolicy("p1", "forbid", None, None, None, "not_approved", "sre")


def test_the_authorizer_agrees_with_the_reference_rules(tmp_path: Path) -> None:
    schema = build_schema(CATALOG)
    effects: set[str] = set()

    @FUZZ
    @given(
        policy_list=policies(),
        request=requests(),
        call_count=st.integers(1, 50),
        approved=st.sampled_from([False, False, True]),
    )
    # One request of each outcome, whatever the generated examples reach.
    @example(policy_list=[], request=READ_REQUEST, call_count=1, approved=False)
    @example(policy_list=[PERMIT_ALL], request=READ_REQUEST, call_count=1, approved=False)
    @example(policy_list=[PERMIT_ALL, FORBID_UNLESS_APPROVED], request=READ_REQUEST, call_count=1, approved=False)
    def run(
        policy_list: list[RefPolicy], request: tuple[str, dict[str, Any], str], call_count: int, approved: bool
    ) -> None:
        policy_text = "\n".join(p.cedar() for p in policy_list)
        authorizer = Authorizer(_policy_set(tmp_path, policy_text, schema), CONFIG)
        tool, args, mode = request
        manifest = CATALOG.tools[tool]
        resource, args = resolve_call(manifest, args, CONFIG)
        who = principal(mode=mode)
        context = build_context(who, manifest, resource, args, SessionState(), call_count)
        if approved:  # as the approvals step will set it once an approval is granted
            context["approval"] = {"granted": True, "approver": "bob", "groups": ["sre"]}
        actual = authorizer.authorize(who, tool, resource, context)
        expected = decide(
            policy_list, RefRequest(tool, manifest.risk.value, resource.environment, mode, approval_granted=approved)
        )
        effects.add(expected.effect)
        assert actual.effect == Effect(expected.effect), (policy_list, request)
        if expected.error:
            assert actual.errors, "an evaluation error must be reported with the deny"
        else:
            assert {p.id for p in actual.policies} == expected.policies

    run()
    # The generator reaches every kind of outcome, or the comparison proves little.
    assert effects == {"allow", "deny", "approval_required"}


# Conditions on context values whose types never change: only the values tell requests apart.
REUSE_CONDITIONS = (
    "context.session.call_count > 2",
    'context.approval.approver == "bob"',
    "context.budget.remaining_cents < 100",
    'context.mode == "interactive"',
    "context.approval.granted",
    'context has args && context.environment == "prod"',
    "context.session.call_count + 9223372036854775807 > 3",  # overflows from call 1: an error, never kept
)


@st.composite
def reuse_policies(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        effect = draw(st.sampled_from(["permit", "forbid"]))
        scope = draw(st.sampled_from(["action", 'action in Action::"risk:read"', 'action in Action::"risk:write"']))
        condition = draw(st.sampled_from(REUSE_CONDITIONS))
        out.append(f"{effect} (principal, {scope}, resource) when {{ {condition} }};")
    return "\n".join(out)


def test_a_reused_decision_is_the_one_cedar_would_make_afresh(tmp_path: Path) -> None:
    """One long-lived authorizer (reusing decisions) against a fresh one per request."""
    schema = build_schema(CATALOG)
    reused: set[bool] = set()

    @FUZZ
    @given(
        policy_text=reuse_policies(),
        targets=st.lists(requests(), min_size=1, max_size=2),
        calls=st.lists(
            st.tuples(
                st.integers(0, 1),
                st.integers(1, 4),
                st.sampled_from(["", "bob", "eve"]),
                st.sampled_from([0, 50, 500]),
                st.sampled_from([False, False, True]),
            ),
            min_size=2,
            max_size=10,
        ),
    )
    def run(
        policy_text: str, targets: list[tuple[str, dict[str, Any], str]], calls: list[tuple[int, int, str, int, bool]]
    ) -> None:
        policy_set = _policy_set(tmp_path, policy_text, schema)
        long_lived = Authorizer(policy_set, CONFIG)
        session = SessionState()
        for target, call_count, approver, remaining, mistyped in calls:
            tool, args, mode = targets[target % len(targets)]  # a few targets, so decisions can be reused
            manifest = CATALOG.tools[tool]
            resource, args = resolve_call(manifest, args, CONFIG)
            who = principal(mode=mode)
            context = build_context(who, manifest, resource, args, session, call_count, remaining)
            context["approval"] = {"granted": bool(approver), "approver": approver, "groups": ["sre"]}
            if mistyped:  # an attribute no policy reads, of the wrong type: Cedar refuses the request
                context["task"] = 7
            with patch.object(cedarpy, "is_authorized", wraps=cedarpy.is_authorized) as engine:
                kept = long_lived.authorize(who, tool, resource, context)
            reused.add(engine.call_count == 0)
            afresh = Authorizer(policy_set, CONFIG).authorize(who, tool, resource, context)
            assert kept == afresh, (policy_text, tool, args, mode, call_count, approver, remaining, mistyped)

    run()
    assert reused == {True, False}, "the run must both reuse decisions and make new ones"
