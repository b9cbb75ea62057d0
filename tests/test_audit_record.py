"""The record the pipeline writes is exactly the audit model's JSON dump, for every field and value kind."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cedargate.audit.canonical import canonical_json
from cedargate.audit.event import ApprovalLink, AuditChanges, AuditEvent, AuditPrincipal, AuditResource, Outcome
from cedargate.audit.record import CHAIN_FIELDS, EventRecord
from cedargate.decision import Decision, DeterminingPolicy, Effect
from cedargate.shadow import ShadowVerdict

text = st.text(max_size=12)
optional_text = st.none() | text
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
"""NaN is left out only because it is unequal to itself: a test below covers it."""
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)
policies = st.builds(
    DeterminingPolicy,
    id=text,
    reason=optional_text,
    file=text,
    line=st.integers(min_value=1, max_value=10_000),
    approval_group=optional_text,
    self_approval=st.booleans(),
)
decisions = st.builds(
    Decision,
    effect=st.sampled_from(Effect),
    policies=st.lists(policies, max_size=3).map(tuple),
    errors=st.lists(text, max_size=2).map(tuple),
)
optional_fields: dict[str, st.SearchStrategy[Any]] = {
    "manifest_hash": optional_text,
    "action": optional_text,
    "duty": optional_text,
    "resource": st.none() | st.builds(AuditResource, type=text, id=text),
    "environment": optional_text,
    "risk": optional_text,
    "decision": st.none() | decisions,
    "shadow": st.none()
    | st.builds(
        ShadowVerdict, scope=st.sampled_from(["file", "environment"]), would=st.sampled_from(Effect), decision=decisions
    ),
    "error": optional_text,
    "result_sha256": optional_text,
    "execution": st.none() | st.dictionaries(text, json_value, max_size=4),
    "context_sources": st.none() | st.lists(text, max_size=3) | st.lists(text, max_size=3).map(tuple),
    "changes": st.none()
    | st.builds(AuditChanges, paths=st.lists(text, max_size=3), classes=st.lists(text, max_size=2)),
    "traceparent": optional_text,
    "approval": st.none()
    | st.builds(
        ApprovalLink, id=text, status=text, approver=optional_text, request_event_id=text, self_approvable=st.booleans()
    ),
}


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields a writer hands over: required ones always, each optional one present or left out."""
    fields: dict[str, Any] = {
        "event_id": draw(text),
        "time": draw(text),
        "principal": draw(st.builds(AuditPrincipal, agent=text, team=text, on_behalf_of=text, mode=text)),
        "session_id": draw(text),
        "task": draw(text),
        "tool": draw(text),
        "arguments": draw(st.dictionaries(text, json_value, max_size=4)),
        "outcome": draw(st.sampled_from(Outcome)),
        "duration_ms": draw(st.floats(min_value=0, max_value=1e6) | st.integers(min_value=0, max_value=10**6)),
    }
    for name, strategy in optional_fields.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    return fields


def _dumped(fields: dict[str, Any]) -> dict[str, Any]:
    return AuditEvent(**fields).model_dump(mode="json", exclude=set(CHAIN_FIELDS))


def test_the_strategies_cover_every_field_a_writer_sets() -> None:
    written_by_writers = set(AuditEvent.model_fields) - set(CHAIN_FIELDS) - {"schema_version"}
    required = {"event_id", "time", "principal", "session_id", "task", "tool", "arguments", "outcome", "duration_ms"}
    assert written_by_writers == required | set(optional_fields)


@settings(max_examples=300, deadline=None)
@given(event_fields())
def test_a_record_equals_the_models_json_dump(fields: dict[str, Any]) -> None:
    record = EventRecord.build(fields)
    assert record.fields == _dumped(fields)
    assert canonical_json(record.fields) == canonical_json(_dumped(fields))  # the text the hash covers
    assert record == EventRecord.of(AuditEvent(**fields))


def test_a_model_shared_by_many_calls_is_dumped_once_and_its_record_stays_right() -> None:
    decision = Decision(effect=Effect.ALLOW, policies=(DeterminingPolicy(id="p", file="f.cedar", line=1),))
    first, second = (EventRecord.build(_fields(decision=decision)) for _ in range(2))
    assert first.fields["decision"] is second.fields["decision"]  # one dump, shared
    other = Decision(effect=Effect.DENY, errors=("boom",))
    assert EventRecord.build(_fields(decision=other)).fields["decision"] == other.model_dump(mode="json")


def test_values_json_has_no_type_for_are_converted_as_the_model_would() -> None:
    fields = _fields(arguments={"when": (1, 2.5), "nested": {"set": [True, None]}}, execution={"pair": ("a", 1)})
    assert EventRecord.build(fields).fields == _dumped(fields)
    not_numbers = _fields(arguments={"x": float("nan"), "y": [float("-inf")]}, duration_ms=float("nan"))
    assert EventRecord.build(not_numbers).fields["arguments"] == {"x": None, "y": [None]}  # as the model writes them
    assert canonical_json(EventRecord.build(not_numbers).fields) == canonical_json(_dumped(not_numbers))


def test_a_field_the_event_lacks_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="`approver_note`"):
        EventRecord.build(_fields(approver_note="x"))
    with pytest.raises(TypeError, match="`hash`"):
        EventRecord.build(_fields(hash="f" * 64))


def _fields(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "time": "2026-11-26T00:00:00+00:00",
        "principal": AuditPrincipal(agent="a", team="t", on_behalf_of="u", mode="autonomous"),
        "session_id": "s",
        "task": "k",
        "tool": "repo_read_file",
        "arguments": {},
        "outcome": Outcome.SUCCEEDED,
        "duration_ms": 0.5,
    }
    return {**base, **overrides}
