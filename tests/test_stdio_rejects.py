"""A stdio line that is no JSON-RPC message gets a JSON-RPC error, and the session goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import audit_events
from tests.raw_wire import handshaken_server, tool_call

from cedargate.stdio_rejects import rejection


@pytest.mark.parametrize(
    ("line", "answered_as", "code", "says"),
    [
        ('{"jsonrpc": "2.0", "id": 2, "method"', None, -32700, "the line is not JSON"),
        ('[{"jsonrpc": "2.0", "id": 2, "method": "ping"}]', None, -32600, "batches are not part of MCP"),
        ('"ping"', None, -32600, "one JSON-RPC 2.0 object per line"),
        ('{"jsonrpc": "1.0", "id": 2, "method": "ping"}', 2, -32600, "jsonrpc: Input should be '2.0'"),
    ],
    ids=["not JSON", "batch", "not an object", "wrong version"],
)
def test_an_unreadable_line_is_answered_and_the_session_goes_on(
    tree: Path, line: str, answered_as: int | None, code: int, says: str
) -> None:
    with handshaken_server(tree) as wire:
        wire.send_line(line)
        reply = wire.answer(answered_as)
        wire.send(tool_call(3, "repo_list_tree", {"repository": "acme/web"}))
        after = wire.answer(3)

    assert reply["error"]["code"] == code
    assert says in reply["error"]["message"]
    assert after["result"]["isError"] is False  # the server still serves the client
    assert [event["tool"] for event in audit_events(tree / "audit.jsonl")] == ["repo_list_tree"]


def test_a_request_with_malformed_params_is_answered_under_its_own_id(tree: Path) -> None:
    """A client waiting on id 41 hears back on 41, not on a null id it matches to nothing."""
    with handshaken_server(tree) as wire:
        wire.send_line(json.dumps({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": [1, 2]}))
        reply = wire.answer(41)

    assert reply["error"]["code"] == -32600 and "params: Input should be an object" in reply["error"]["message"]


def test_a_message_missing_its_fields_names_them() -> None:
    import mcp_types as types
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as problem:
        types.jsonrpc_message_adapter.validate_json(json.dumps({"id": 7}), by_name=False)

    message = rejection(problem.value).error.message

    assert message.startswith("Invalid Request:")
    assert "jsonrpc: Field required" in message and "method: Field required" in message
    assert "JSONRPCRequest" not in message  # pydantic's union member names mean nothing to a client
