"""Which context paths a policy reads, and which requests may share a decision."""

from __future__ import annotations

import json

import cedarpy
import pytest

from cedargate.decision_cache import context_paths, request_key


def _paths(text: str) -> set[tuple[str, ...]]:
    static = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    return set(context_paths(static.values()))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("", set()),
        ('when { context.mode == "interactive" }', {("mode",)}),
        ("unless { context.approval.granted }", {("approval", "granted")}),
        ('when { context has args && context.args.path like "docs/*" }', {("args",), ("args", "path")}),
        ('when { context["session"]["call_count"] > 3 }', {("session", "call_count")}),
        ("when { context.session.repositories.contains(resource.name) }", {("session", "repositories")}),
        ('when { context == {"mode": "x"} }', {()}),
        ('when { {"c": context}.c.mode == "x" }', {()}),
        ('when { principal.team == "sre" }', set()),
    ],
)
def test_the_paths_a_condition_reads(condition: str, expected: set[tuple[str, ...]]) -> None:
    found = _paths(f"permit (principal, action, resource) {condition};")
    # A path under one read whole adds nothing to the key.
    assert found == {p for p in expected if not any(p[:n] in expected for n in range(len(p)))}


def test_keys_differ_on_read_values_and_on_any_type_but_not_on_unread_values() -> None:
    paths = (("mode",),)
    base = {"mode": "interactive", "task": "t1", "session": {"call_count": 1}}
    assert request_key(base, paths) == request_key({**base, "task": "t2", "session": {"call_count": 9}}, paths)
    assert request_key(base, paths) != request_key({**base, "mode": "autonomous"}, paths)
    assert request_key(base, paths) != request_key({**base, "task": 7}, paths)
    assert request_key(base, paths) != request_key({**base, "extra": "x"}, paths)


def test_true_and_one_are_different_values() -> None:
    paths = (("flag",),)
    assert request_key({"flag": True}, paths) != request_key({"flag": 1}, paths)


def test_a_missing_path_is_its_own_value() -> None:
    paths = (("args", "path"),)
    assert request_key({"args": {}}, paths) != request_key({"args": {"path": ""}}, paths)


def test_a_request_whose_read_values_are_large_is_not_kept() -> None:
    paths = (("args", "content"),)
    assert request_key({"args": {"content": "x" * 100}}, paths) is not None
    assert request_key({"args": {"content": "x" * 100_000}}, paths) is None
    assert request_key({"args": {"content": ["x"] * 10_000}}, paths) is None


def test_a_value_that_is_not_json_is_decided_afresh() -> None:
    paths = (("args", "x"),)
    assert request_key({"args": {"x": {"a", "b"}}}, paths) is None  # a Python set: no JSON form
    assert request_key({"args": {"x": object()}}, paths) is None
    assert request_key({"args": {"x": {1: "a", "b": 2}}}, paths) is None  # keys that do not sort
    assert request_key({"args": {"x": ["a", {"b": 1}]}}, paths) is not None


def test_the_paths_come_sorted_so_a_key_needs_no_sorting() -> None:
    policies = [
        'permit (principal, action, resource) when { context.risk == "read" && context.args.path == "a" };',
        'permit (principal, action, resource) when { context.mode == "x" };',
    ]
    static = json.loads(cedarpy.policies_to_json_str("\n".join(policies)))["staticPolicies"]
    found = context_paths(static.values())
    assert found == (("args", "path"), ("mode",), ("risk",))
