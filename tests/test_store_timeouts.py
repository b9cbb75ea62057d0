"""A PostgreSQL store that stops answering fails calls closed, audited, within seconds.

The cluster's processes are stopped with SIGSTOP: their kernel still accepts and acknowledges
TCP, so only client-side bounds (``connect_timeout``, the answer timeout) can end the wait. A
watchdog resumes the cluster after ``WATCHDOG_S`` so code without those bounds fails the test
rather than hanging it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from tests.conftest import audit_events
from tests.governed_tree import store_toml
from tests.store_fixtures import PostgresServer, local_postgres

from cedargate.config import StoreConfig, load_config
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server
from cedargate.store import engine as store_engine

pytestmark = pytest.mark.anyio

READ = ("repo_read_file", {"repository": "acme/web", "path": "README.md"})
BOUND_S = 30.0
"""A ping that gets no answer (8 s), one reconnect (5 s), and room for a slow machine."""
WATCHDOG_S = 60.0


@pytest.fixture
def cluster() -> Iterator[PostgresServer]:
    """A cluster of this test's own: freezing it must not stall the session's shared one."""
    with local_postgres() as server:
        yield server


@pytest.fixture
def runtime(tree: Path, cluster: PostgresServer) -> Iterator[Runtime]:
    path = tree / "cedargate.toml"
    path.write_text(path.read_text() + "\n" + store_toml(StoreConfig(url=cluster.create_database())))
    rt = build_runtime(load_config(path, environ={}))
    yield rt
    rt.close()


def _cluster_pids(cluster: PostgresServer) -> list[int]:
    postmaster = int((cluster.data / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def test_a_hung_postgresql_store_refuses_the_call_audited_within_seconds_then_recovers(
    runtime: Runtime, cluster: PostgresServer
) -> None:
    async with Client(build_server(runtime)) as client:
        assert (await client.call_tool(*READ)).is_error is False  # the pool now holds a live connection
        pids = _cluster_pids(cluster)
        _signal_all(pids, signal.SIGSTOP)
        watchdog = threading.Timer(WATCHDOG_S, _signal_all, (pids, signal.SIGCONT))
        watchdog.start()
        try:
            started = time.monotonic()
            hung = await client.call_tool(*READ)
            elapsed = time.monotonic() - started
        finally:
            watchdog.cancel()
            _signal_all(pids, signal.SIGCONT)
        back = await client.call_tool(*READ)
    assert elapsed < BOUND_S, f"the call waited {elapsed:.1f} s on a hung store"
    assert hung.is_error is True
    message = hung.content[0].text  # type: ignore[union-attr]
    assert "the governance store failed" in message and "nothing ran" in message and "(audit event " in message
    assert back.is_error is False
    outcomes = [e["outcome"] for e in audit_events(runtime.config.audit.path)]
    assert outcomes == ["succeeded", "failed", "succeeded"]


def test_every_store_connection_carries_the_statement_and_lock_timeouts(cluster: PostgresServer) -> None:
    engine = store_engine.create_store_engine(cluster.create_database())
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "5s"
            assert connection.execute(text("SHOW lock_timeout")).scalar() == "4s"
            with pytest.raises(OperationalError, match="statement timeout"):
                connection.execute(text("SELECT pg_sleep(30)"))
    finally:
        engine.dispose()


def test_a_setting_in_the_url_wins_over_the_default() -> None:
    args = store_engine.postgres_connect_args(
        "postgresql+psycopg://u@h/db?connect_timeout=20&options=-c%20statement_timeout%3D0"
    )
    assert "connect_timeout" not in args  # SQLAlchemy passes the URL's own
    assert args["options"].endswith("-c statement_timeout=0")  # later `-c` wins
    assert args["tcp_user_timeout"] > 0 and args["keepalives"] == 1


def test_a_migration_engine_is_not_cut_short_by_the_statement_timeout(cluster: PostgresServer) -> None:
    engine = store_engine.create_store_engine(cluster.create_database(), bounded_statements=False)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
    finally:
        engine.dispose()
