"""Faults: the governance database goes away mid-run and comes back.

A real PostgreSQL cluster is stopped under a running server: every call fails closed with an
error that names the store, is audited, and runs no handler. When the cluster is started
again the same runtime serves calls again, without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from tests.adversarial.harness import Governed, assert_call_governed, make_tree, spy_on
from tests.governed_tree import store_toml
from tests.store_fixtures import PostgresServer, local_postgres

from cedargate.audit.event import Outcome
from cedargate.audit.verify import verify_log
from cedargate.config import StoreConfig, load_config
from cedargate.runtime import build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

READ = ("repo_read_file", {"repository": "acme/web", "path": "README.md"})
WRITE = ("repo_write_file", {"repository": "acme/web", "branch": "agent/outage", "path": "o.txt", "content": "o"})
DENIED = ("repo_write_file", {"repository": "acme/payments", "branch": "agent/x", "path": "x", "content": "x"})
CAPS = "\n[budgets.teams.storefront]\nday_cents = 1000\n"


@pytest.fixture
def cluster() -> Iterator[PostgresServer]:
    """A cluster of this test's own: stopping it must not take the session's shared one down."""
    with local_postgres() as server:
        yield server


@pytest.fixture
def gov(tmp_path: Path, cluster: PostgresServer) -> Iterator[Governed]:
    config = make_tree(tmp_path)
    config.write_text(config.read_text() + "\n" + store_toml(StoreConfig(url=cluster.create_database())) + CAPS)
    g = spy_on(build_runtime(load_config(config, environ={})))
    yield g
    g.close()


async def _call(g: Governed, tool: str, args: dict[str, object]) -> tuple[int, int, object]:
    before = (len(g.events), len(g.runs))
    result = await g.acall(tool, args)
    assert_call_governed(g, *before, result)
    return before[0], before[1], result


async def test_a_database_outage_fails_every_call_closed_and_audited_then_recovers_without_restart(
    gov: Governed, cluster: PostgresServer
) -> None:
    for tool, args in (READ, WRITE):
        assert (await gov.acall(tool, args)).outcome is Outcome.SUCCEEDED
    runs_before_outage = len(gov.runs)

    cluster.stop()
    for tool, args in (READ, WRITE, DENIED, READ):
        _, _, result = await _call(gov, tool, args)
        assert result.outcome is Outcome.FAILED  # type: ignore[attr-defined]
        message = result.message  # type: ignore[attr-defined]
        assert "the governance store failed" in message and "nothing ran" in message
        assert "check the `[store]` database" in message
    assert len(gov.runs) == runs_before_outage, "a handler ran while the store was down"
    outage = gov.events[-4:]
    assert [e.outcome for e in outage] == [Outcome.FAILED] * 4
    assert all(e.error and "governance store failed" in e.error for e in outage)

    cluster.start()
    for tool, args in (READ, WRITE):
        _, _, result = await _call(gov, tool, args)
        assert result.outcome is Outcome.SUCCEEDED  # type: ignore[attr-defined]
    assert len(gov.runs) == runs_before_outage + 2
    verdict = verify_log(gov.runtime.config.audit.path)
    assert verdict.ok and verdict.events == len(gov.events) == 8


async def test_an_outage_is_a_clear_tool_error_over_a_real_mcp_session(gov: Governed, cluster: PostgresServer) -> None:
    async with Client(build_server(gov.runtime)) as client:
        assert (await client.call_tool(*READ)).is_error is False
        cluster.stop()
        down = await client.call_tool(*READ)
        cluster.start()
        back = await client.call_tool(*READ)
    assert down.is_error is True
    text = down.content[0].text  # type: ignore[union-attr]
    assert "the governance store failed" in text and "(audit event " in text
    assert "Traceback" not in text and "psycopg" not in text.lower()
    assert back.is_error is False
    assert [e.outcome for e in gov.events] == [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SUCCEEDED]
