"""OWASP MCP: scope creep. A session pinned to one repository by policy cannot reach another.

The pinning policy is written into the test's own tree; Cedar sees
``context.session.repositories``. Other names for the second repository, paths that climb
out of the first, and a client-chosen session id over HTTP all fail to reach it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.adversarial.harness import Governed, make_tree, spy_on, start_http_server
from tests.conftest import audit_events

from cedargate.config import load_config
from cedargate.runtime import build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

PIN = """
@id("one-repository-per-session")
@reason("a session works on the first repository it touched")
forbid (principal, action, resource is Repository)
when {
  !context.session.repositories.isEmpty() &&
  !context.session.repositories.contains(resource.name)
};
"""
WEB_READ = {"repository": "acme/web", "path": "README.md"}
REACH = [
    ("repo_read_file", {"repository": "acme/payments", "path": "README.md"}),
    ("repo_log", {"repository": "acme/payments"}),
    ("repo_read_file", {"repository": "ACME/Payments", "path": "README.md"}),
    ("repo_read_file", {"repository": " acme/payments", "path": "README.md"}),
    ("repo_read_file", {"repository": "acme/payments/", "path": "README.md"}),
    ("repo_read_file", {"repository": "acme/web/../payments", "path": "README.md"}),
    ("repo_read_file", {"repository": "acme/web", "path": "../payments/README.md"}),
    ("repo_read_file", {"repository": "acme/web", "path": "/etc/passwd"}),
    ("repo_write_file", {"repository": "acme/payments", "branch": "agent/x", "path": "x", "content": "x"}),
]


def _pinned_tree(tmp_path: Path) -> Path:
    config = make_tree(tmp_path)
    (tmp_path / "policies" / "session.cedar").write_text(PIN)
    return config


@pytest.fixture
def gov(tmp_path: Path) -> Governed:
    g = spy_on(build_runtime(load_config(_pinned_tree(tmp_path), environ={})))
    yield g  # type: ignore[misc]
    g.close()


def _text(result: Any) -> str:
    return str(result.content[0].text)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_session_pinned_to_one_repository_reaches_no_other_by_any_name(gov: Governed, mode: str) -> None:
    async with Client(build_server(gov.runtime), mode=mode) as client:
        assert (await client.call_tool("repo_read_file", WEB_READ)).is_error is False
        refused = [await client.call_tool(tool, args) for tool, args in REACH]
        assert (await client.call_tool("repo_log", {"repository": "acme/web"})).is_error is False
    for (tool, args), result in zip(REACH, refused, strict=True):
        assert result.is_error is True, f"{tool} {args} was served"
        assert "(audit event " in _text(result)
    assert "one-repository-per-session" in _text(refused[0]) and "one-repository-per-session" in _text(refused[1])
    # Every handler that ran worked on acme/web; every call has its event.
    assert {run.call.resource.ref.id for run in gov.runs} == {"acme/web"}
    assert len(gov.events) == len(REACH) + 2


async def test_a_refused_first_call_does_not_pin_the_session_to_the_repository_it_named(gov: Governed) -> None:
    """Only allowed calls pin: a denied write to prod does not make prod the session's repository."""
    async with Client(build_server(gov.runtime)) as client:
        denied = await client.call_tool(*REACH[-1])
        web = await client.call_tool("repo_read_file", WEB_READ)
        payments = await client.call_tool(*REACH[0])
    assert denied.is_error is True and "prod-writes-forbidden" in _text(denied)
    assert web.is_error is False
    assert payments.is_error is True and "one-repository-per-session" in _text(payments)


async def _call_with_session_id(url: str, mode: str, session_id: str, tool: str, args: dict[str, Any]) -> str:
    """One call whose request carries a session id the client made up: ``served``, ``error`` or ``refused``."""
    try:
        async with (
            httpx2.AsyncClient(headers={"mcp-session-id": session_id}, timeout=30) as http_client,
            Client(streamable_http_client(url, http_client=http_client), mode=mode) as client,
        ):
            result = await client.call_tool(tool, args)
    except Exception:  # an unknown session id is refused by the transport
        return "refused"
    return "error" if result.is_error else "served"


async def test_over_http_a_client_chosen_session_id_does_not_unpin_the_session(tmp_path: Path) -> None:
    server = await start_http_server(_pinned_tree(tmp_path), tmp_path / "server.log")
    try:
        async with Client(server.url) as client:
            assert (await client.call_tool("repo_read_file", WEB_READ)).is_error is False
            pinned = await client.call_tool(*REACH[0])
        legacy = await _call_with_session_id(server.url, "legacy", uuid.uuid4().hex, *REACH[0])
        # 2026-07-28: the task is the session, so a new made-up id per call is no way out of the pin.
        first = await _call_with_session_id(server.url, "2026-07-28", uuid.uuid4().hex, "repo_read_file", WEB_READ)
        escape = await _call_with_session_id(server.url, "2026-07-28", uuid.uuid4().hex, *REACH[0])
    finally:
        server.stop()
    assert pinned.is_error is True and "one-repository-per-session" in _text(pinned)
    assert legacy == "refused"
    assert (first, escape) == ("served", "error")
    events = audit_events(tmp_path / "audit.jsonl")
    assert [e["outcome"] for e in events] == ["succeeded", "denied", "succeeded", "denied"]
    assert events[2]["session_id"] == events[3]["session_id"]
    assert all(e["resource"]["id"] == "acme/web" for e in events if e["outcome"] == "succeeded")


REGION_PIN = """
@id("eu-only")
@reason("AWS work stays in eu-west-1")
forbid (principal, action, resource is AwsAccount)
when { context.args has region && context.args.region != "eu-west-1" };
"""


async def test_leaving_out_the_region_cannot_step_around_a_policy_on_it(tmp_path: Path) -> None:
    """An AWS call runs in the configured region when it names none; policies decide on that region."""
    config = make_tree(tmp_path)
    (tmp_path / "policies" / "region.cedar").write_text(REGION_PIN)
    g = spy_on(
        build_runtime(load_config(config, environ={})),
        replace={"aws": lambda call: {"region": call.args["region"], "account": call.args["account"]}},
    )
    try:
        assert g.runtime.config.aws.region != "eu-west-1"
        omitted = await g.acall("aws_sts_get_caller_identity", {})
        named_elsewhere = await g.acall("aws_sts_get_caller_identity", {"region": g.runtime.config.aws.region})
        named_eu = await g.acall("aws_sts_get_caller_identity", {"region": "eu-west-1"})
    finally:
        g.close()
    assert omitted.is_error and "eu-only" in (omitted.message or "")
    assert named_elsewhere.is_error and "eu-only" in (named_elsewhere.message or "")
    assert named_eu.is_error is False
    [run] = g.runs
    assert run.args["region"] == "eu-west-1"
    assert run.args["account"] == g.runtime.config.aws.default_account
    # The trail keeps the arguments as the agent sent them.
    assert [e.arguments for e in g.events] == [{}, {"region": g.runtime.config.aws.region}, {"region": "eu-west-1"}]


async def test_an_omitted_region_reaches_the_handler_as_the_configured_one(tmp_path: Path) -> None:
    g = spy_on(
        build_runtime(load_config(make_tree(tmp_path), environ={})),
        replace={"aws": lambda call: {"region": call.args["region"]}},
    )
    try:
        result = await g.acall("aws_sts_get_caller_identity", {})
    finally:
        g.close()
    assert result.is_error is False, result.message
    assert result.payload == {"region": g.runtime.config.aws.region}
