"""The canonical JSON hashes are computed over: the fast encoder writes exactly what the reference does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.conftest import audit_events, sample_event

from cedargate.audit.canonical import canonical_json, canonical_result
from cedargate.audit.event import GENESIS_HASH, event_hash
from cedargate.audit.verify import verify_log
from cedargate.identity import principal_from_config
from cedargate.pipeline import CallRequest
from cedargate.runtime import Runtime
from cedargate.session import SessionState

REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""What every earlier log was hashed over."""
STRICT_REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""What every earlier ``result_sha256`` was computed over."""

pytestmark = pytest.mark.anyio

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-05, 0.0001, 9.99e-05, 1e16, 1e15, -0.0, 5e-324, 1.7976931348623157e308, 123456789012345.6]
)
_INTS = st.integers(-(2**70), 2**70) | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64])
_JSON = st.recursive(
    st.none() | st.booleans() | _INTS | _FLOATS | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _record(arguments: dict[str, Any], execution: Any, duration_ms: float) -> dict[str, Any]:
    record = sample_event(1, arguments={}, duration_ms=0.5).model_dump(mode="json", exclude={"hash"})
    return {**record, "arguments": arguments, "execution": execution, "duration_ms": duration_ms}


@settings(max_examples=400, deadline=None)
@given(arguments=st.dictionaries(_TEXT, _JSON, max_size=5), execution=_JSON, duration_ms=_FLOATS)
@example(arguments={"n": float("nan")}, execution=None, duration_ms=0.5)
@example(arguments={"n": 1e-05}, execution={"big": 2**64}, duration_ms=1e16)
@example(arguments={"t": '\u2028\x7f\x00"\\\ufeff'}, execution=[0.1, -0.0], duration_ms=0.0)
def test_the_fast_encoder_writes_exactly_what_the_reference_writes(
    arguments: dict[str, Any], execution: Any, duration_ms: float
) -> None:
    record = _record(arguments, execution, duration_ms)
    assert canonical_json(record) == REFERENCE.encode(record)


@settings(max_examples=300, deadline=None)
@given(payload=st.dictionaries(_TEXT, _JSON, max_size=5))
@example(payload={"n": float("inf")})
@example(payload={"s": "caf\udce9"})
@example(payload={"n": 2**64, "f": 1e-07})
def test_a_result_hashes_as_the_strict_reference_writes_it_or_is_refused_as_it_would_be(
    payload: dict[str, Any],
) -> None:
    """``result_sha256`` covers the same bytes as before; NaN, infinities and lone surrogates are not JSON."""
    try:
        expected: bytes | None = STRICT_REFERENCE.encode(payload).encode()
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            canonical_result(payload)
    else:
        assert canonical_result(payload) == expected


def test_a_log_hashed_by_the_reference_encoder_still_verifies(tmp_path: Path) -> None:
    """Logs written before the fast encoder (floats, NaN, long integers included) verify unchanged."""
    path = tmp_path / "audit.jsonl"
    previous = GENESIS_HASH
    lines = []
    for n, arguments in enumerate([{"x": 1e-05}, {"x": float("nan")}, {"x": 2**70}, {"x": "é"}]):
        record = {**_record(arguments, {"seconds": 2.5e-07}, 0.25), "event_id": f"e{n}", "prev_hash": previous}
        body = REFERENCE.encode(record)
        digest = hashlib.sha256(body.encode()).hexdigest()
        lines.append(f'{body[:-1]},"hash":"{digest}"}}')
        assert event_hash({**json.loads(lines[-1])}) == digest
        previous = digest
    path.write_text("\n".join(lines) + "\n")
    report = verify_log(path)
    assert report.ok, report
    assert report.events == 4


def test_a_lone_surrogate_is_written_as_a_replacement_character() -> None:
    record = _record({"path": "a\ud800b"}, None, 0.5)
    text = canonical_json(record)
    assert '"path":"a\ufffdb"' in text
    text.encode()  # valid UTF-8: the line can be written
    assert canonical_json(json.loads(text)) == text


async def test_a_call_with_a_lone_surrogate_is_audited_and_the_chain_verifies(runtime: Runtime) -> None:
    """The transports refuse lone surrogates; an in-process caller can still send one, and is audited."""
    principal = principal_from_config(runtime.config)
    request = CallRequest("repo_read_file", {"repository": "acme/web", "path": "a\udc80"}, principal, SessionState())
    result = await runtime.pipeline.call(request)
    assert result.is_error
    assert result.event is not None
    [event] = audit_events(runtime.config.audit.path)
    assert event["event_id"] == result.event.event_id
    assert event["arguments"]["path"] == "a\ufffd"
    assert verify_log(runtime.config.audit.path).ok
