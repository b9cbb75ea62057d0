"""A streamable-HTTP session serves only the principal that opened it, down to cedargate's own session registry.

The transport already refuses a token of another principal (``test_http_auth``); this is the
layer behind it, which fails closed and audits should such a request reach a call.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import mcp_types as types
import pytest
from tests.conftest import audit_events

from cedargate.identity import Principal
from cedargate.runtime import Runtime
from cedargate.server import SessionOwnerError, SessionRegistry, refuse_audited

OWNER = Principal(agent="codex-ci", team="storefront", on_behalf_of="dana", mode="autonomous", task="T-A")
OTHER = OWNER.model_copy(update={"on_behalf_of": "erin", "team": "payments", "task": "T-C"})


def _in_session(session_id: str) -> Any:
    """A handshake-era request context carrying ``session_id`` as its mcp-session-id header."""
    return SimpleNamespace(
        protocol_version="2025-11-25", request=SimpleNamespace(headers={"mcp-session-id": session_id})
    )


def test_another_principal_naming_an_open_session_is_refused_and_the_owner_keeps_it() -> None:
    sessions = SessionRegistry()
    opened = sessions.for_context(_in_session("s-1"), OWNER)
    opened.record_read("e1")
    with pytest.raises(SessionOwnerError, match="session `s-1` was opened by another principal"):
        sessions.for_context(_in_session("s-1"), OTHER)
    assert sessions.for_context(_in_session("s-1"), OWNER) is opened
    assert sessions.for_context(_in_session("s-2"), OTHER).context_sources == []


def test_a_call_refused_for_its_session_is_audited_as_denied_and_says_so(runtime: Runtime) -> None:
    params = types.CallToolRequestParams(name="repo_read_file", arguments={"repository": "acme/web", "path": "x"})
    result = refuse_audited(runtime.audit, OTHER, params, "s-1", "session `s-1` was opened by another principal")
    [event] = audit_events(runtime.config.audit.path)
    assert result.is_error is True
    assert f"(audit event {event['event_id']})" in result.content[0].text  # type: ignore[union-attr]
    assert (event["outcome"], event["session_id"], event["task"]) == ("denied", "s-1", "T-C")
    assert event["principal"]["on_behalf_of"] == "erin"
    assert event["error"] == "session `s-1` was opened by another principal"
