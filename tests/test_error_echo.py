"""Errors show what the agent sent as JSON, never whole when long: the reply and the audit line stay small."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from tests.conftest import audit_events

from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

SMALL = 2_000
"""Bytes an error about one argument needs, whatever the argument's size."""


async def _refusal(runtime: Runtime, tool: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
    """The error text, the call's audit event and the size of its audit line."""
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error is True
    [line] = runtime.config.audit.path.read_bytes().splitlines()
    [event] = audit_events(runtime.config.audit.path)
    return result.content[0].text, event, len(line)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "`null`"), (True, "`true`"), ({"a": 1}, '`{"a": 1}`'), (["x"], '`["x"]`')],
    ids=["null", "true", "object", "array"],
)
async def test_a_value_of_the_wrong_type_is_shown_as_json(runtime: Runtime, value: Any, shown: str) -> None:
    text, _, _ = await _refusal(runtime, "repo_read_file", {"repository": "acme/web", "path": value})
    assert f"field `path`: {shown} is not of type 'string'" in text


async def test_an_over_long_argument_is_named_by_its_start_and_length(runtime: Runtime) -> None:
    pattern = "p" * 3_000_000
    text, event, line = await _refusal(runtime, "repo_search", {"repository": "acme/web", "pattern": pattern})
    assert 'field `pattern`: `"ppp' in text and "(3,000,000 characters) is too long" in text
    assert len(text) < SMALL and len(event["error"]) < SMALL
    assert line < 10_000  # the argument itself is kept as its start and digest


async def test_an_unknown_repository_of_two_million_characters_is_not_echoed_whole(runtime: Runtime) -> None:
    text, event, line = await _refusal(runtime, "repo_read_file", {"repository": "a" * 2_000_000, "path": "README.md"})
    assert "repository `aaa" in text and "(2,000,000 characters) is not configured" in text
    assert len(text) < SMALL and event["outcome"] == "invalid_arguments" and line < 10_000


async def test_an_unknown_tool_with_a_huge_name_is_refused_and_audited_in_a_small_line(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("x" * 1_000_000, {})
    text = refused.value.message
    [event] = audit_events(runtime.config.audit.path)
    line = len(runtime.config.audit.path.read_bytes())
    assert text.startswith("unknown tool `xxx") and "(1,000,000 characters)" in text and len(text) < SMALL
    assert event["outcome"] == "unknown_tool" and event["tool"].endswith("… (1,000,000 characters)")
    assert line < 10_000


async def test_an_extra_field_with_a_huge_name_is_named_by_its_start(runtime: Runtime) -> None:
    extra = "k" * 300_000
    text, event, line = await _refusal(runtime, "repo_read_file", {"repository": "acme/web", "path": "a", extra: 1})
    assert "(300,000 characters) is not accepted by this tool" in text and len(text) < SMALL
    assert line < 10_000 and event["outcome"] == "invalid_arguments"


async def test_long_strings_nested_in_arguments_are_summarised_in_the_audit_line(runtime: Runtime) -> None:
    nested = {"deeper": ["n" * 100_000]}
    _, event, line = await _refusal(runtime, "repo_read_file", {"repository": "acme/web", "path": "a", "x": nested})
    [summary] = event["arguments"]["x"]["deeper"]
    assert summary.startswith("nnn") and "[100000 chars, sha256 " in summary
    assert line < 10_000 and json.loads(json.dumps(event))  # still one plain JSON object
