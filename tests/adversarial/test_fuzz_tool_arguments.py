"""Generated tool arguments, inside and outside each published tool's input schema.

For every tool in the catalog (whatever tools exist), every call either works or gets a
clear error; each leaves exactly one audit event; no handler runs without an allow; nothing
reaches a shell; and nothing the agent sends changes which calls are allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client
from tests.adversarial.harness import EXAMPLES, FUZZ, Governed, assert_call_governed
from tests.adversarial.schema_strategy import from_schema

from cedargate.audit.event import Outcome
from cedargate.audit.verify import verify_log
from cedargate.server import build_server

CANARY = "/tmp/cedargate-adversarial-canary"

HOSTILE_STRINGS = [
    "",
    "-",
    "--",
    "--upload-pack=touch " + CANARY,
    "--output=" + CANARY,
    "-c core.hooksPath=/tmp",
    "$(touch " + CANARY + ")",
    "`touch " + CANARY + "`",
    "; touch " + CANARY,
    "| touch " + CANARY,
    "&& touch " + CANARY,
    "../../etc/passwd",
    "/etc/passwd",
    ".git/config",
    ".GIT/HEAD",
    "a/../../b",
    "README.md\x00.txt",
    "HEAD~1",
    "HEAD^{tree}",
    "main..agent/x",
    "@{-1}",
    "refs/heads/main",
    "main",
    "agent/",
    "agent/x",
    "agent/../main",
    "agent/x.lock",
    "agent//x",
    "a" * 5000,
    "\u202e\u0000\ud7ff",
    "AKIAIOSFODNN7EXAMPLE",
    "Bearer abcdefghijklmnopqrstuvwxyz",
]

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _resource_names(gov: Governed) -> list[str]:
    config = gov.runtime.config
    return [r.name for r in config.repositories] + [a.id for a in config.aws.accounts] + ["acme/secret", "0" * 12]


PLAUSIBLE: dict[str, list[str]] = {
    "path": ["README.md", "src/app.py", "missing.txt", "src/ledger.py", "docs/new.md"],
    "branch": ["agent/fuzz", "agent/fuzz-2", "agent/none", "main"],
    "ref": ["HEAD", "main"],
    "base": ["HEAD", "main"],
    "content": ["x = 1\n", ""],
    "message": ["Fix the timeout"],
}
"""Values that make a call get past validation, so decisions and handlers are reached too."""


@st.composite
def calls(draw: st.DrawFn, gov: Governed) -> tuple[str, dict[str, Any]]:
    """A tool from the catalog and arguments: schema-valid, plausible or hostile, then maybe bent."""
    manifest = draw(st.sampled_from(list(gov.runtime.catalog)))
    schema = manifest.input_schema
    args: dict[str, Any] = draw(from_schema(schema))
    properties = list(schema.get("properties", {}))
    resource_arg = manifest.resource.argument
    configured = [r.name for r in gov.runtime.config.repositories] + [a.id for a in gov.runtime.config.aws.accounts]
    # Hypothesis tries small draws first: 0 means the plausible choice, large numbers the hostile one.
    if draw(st.integers(0, 4)) < 4:
        kind_names = [n for n in configured if ("/" in n) == (manifest.resource.kind == "repository")]
        args[resource_arg] = draw(st.sampled_from(kind_names or configured))
    else:
        args[resource_arg] = draw(st.sampled_from(_resource_names(gov)))
    for name in properties:
        if name == resource_arg or (name not in args and name not in schema.get("required", [])):
            continue
        choice = draw(st.integers(0, 5))
        if choice <= 2 and name in PLAUSIBLE:
            args[name] = draw(st.sampled_from(PLAUSIBLE[name]))
        elif choice == 5:
            args[name] = draw(st.sampled_from(HOSTILE_STRINGS))
    bend = draw(st.integers(0, 7))
    if bend == 1 and properties:  # a value of the wrong JSON type
        args[draw(st.sampled_from(properties))] = draw(JSON_VALUES)
    elif bend == 2:  # an argument the schema does not declare
        args[draw(st.text(min_size=1, max_size=12))] = draw(JSON_VALUES)
    elif bend == 3 and args:  # a required argument missing
        args.pop(draw(st.sampled_from(sorted(args))))
    return manifest.name, args


def test_fuzzed_arguments_never_crash_and_every_call_is_governed(gov: Governed) -> None:
    outcomes: set[Outcome] = set()

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        tool, args = data.draw(calls(gov))
        before_events, before_runs = len(gov.events), len(gov.runs)
        result = gov.call(tool, args)
        assert_call_governed(gov, before_events, before_runs, result)
        event = gov.events[-1]
        outcomes.add(event.outcome)
        if event.outcome is Outcome.INVALID_ARGUMENTS:
            assert result.message is not None and "field `" in result.message
        manifest = gov.runtime.catalog.tools[tool]
        if event.environment == "prod" and not manifest.risk.read_only:
            # The shipped policies forbid every change in prod; no argument may turn that around.
            assert event.decision is not None and not event.decision.allowed

    run()
    assert not Path(CANARY).exists(), "an argument reached a shell or a git option"
    assert verify_log(gov.runtime.config.audit.path).ok
    # The generator reaches past validation into decisions and handlers, not only refusals.
    assert {Outcome.INVALID_ARGUMENTS, Outcome.SUCCEEDED, Outcome.DENIED, Outcome.FAILED} <= outcomes


def test_unknown_tool_names_are_refused_and_audited(gov: Governed) -> None:
    published = set(gov.runtime.catalog.tools)

    @FUZZ
    @given(name=st.text(max_size=80), args=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3))
    def run(name: str, args: dict[str, Any]) -> None:
        if name in published:
            return
        before_events, before_runs = len(gov.events), len(gov.runs)
        result = gov.call(name, args)
        assert_call_governed(gov, before_events, before_runs, result)
        assert result.outcome is Outcome.UNKNOWN_TOOL

    run()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_fuzzed_calls_through_a_real_mcp_session_get_tool_results_never_protocol_failures(
    gov: Governed, mode: str
) -> None:
    server = build_server(gov.runtime)

    async def one(tool: str, args: dict[str, Any]) -> None:
        with anyio.fail_after(30):
            async with Client(server, mode=mode) as client:
                before = len(gov.events)
                result = await client.call_tool(tool, args)
        assert len(gov.events) == before + 1
        event = gov.events[-1]
        assert result.is_error is (event.outcome is not Outcome.SUCCEEDED)
        if result.is_error:
            assert event.event_id in result.content[0].text  # type: ignore[union-attr]
        else:
            assert result.structured_content is not None

    @settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        tool, args = data.draw(calls(gov))
        anyio.run(one, tool, args)

    run()
