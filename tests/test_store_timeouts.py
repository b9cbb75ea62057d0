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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from tests.conftest import audit_events
from tests.governed_tree import store_toml
from tests.store_fixtures import PostgresCluster, PostgresServer, local_postgres

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


def _raw(connection: Any) -> Any:
    """The psycopg connection under a SQLAlchemy one."""
    return connection.connection.dbapi_connection


def test_the_answer_limit_follows_the_statement_timeout_in_force(postgres: PostgresCluster) -> None:
    """The client waits the statement timeout and a margin of at least 3 s; no limit only when the operator set 0."""
    database = postgres.create_database()
    for options, statement_s in (
        ("", 5.0),
        ("?options=-c%20statement_timeout%3D60000", 60.0),
        ("?options=-c%20statement_timeout%3D2min", 120.0),
    ):
        engine = store_engine.create_store_engine(database + options)
        try:
            with engine.connect() as connection:
                limit = _raw(connection).answer_timeout
                assert statement_s + 3 <= limit <= statement_s + 10, (options, limit)
                assert connection.execute(text("SELECT 1")).scalar() == 1  # reading it left no transaction behind
        finally:
            engine.dispose()
    engine = store_engine.create_store_engine(database + "?options=-c%20statement_timeout%3D0")
    try:
        with engine.connect() as connection:
            assert _raw(connection).answer_timeout is None
    finally:
        engine.dispose()


def test_a_statement_timeout_raised_in_the_url_lets_a_longer_statement_finish(postgres: PostgresCluster) -> None:
    engine = store_engine.create_store_engine(postgres.create_database() + "?options=-c%20statement_timeout%3D30000")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_sleep(9.5), 1")).one()[1] == 1  # past the old fixed 8 s
    finally:
        engine.dispose()


def test_a_statement_the_client_gave_up_on_is_cancelled_on_the_server(postgres: PostgresCluster) -> None:
    database = postgres.create_database()
    marker = f"gave-up-{uuid.uuid4().hex}"
    engine = store_engine.create_store_engine(database)
    watcher = create_engine(database, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            _raw(connection).answer_timeout = 0.5  # the client gives up long before the server's 5 s
            started = time.monotonic()
            with pytest.raises(OperationalError, match=r"did not answer within 0\.5 s"):
                connection.execute(text(f"SELECT pg_sleep(30) /* {marker} */"))
            assert time.monotonic() - started < 4
        running = text("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE :marker")
        deadline = time.monotonic() + 2.5  # well inside the 5 s statement_timeout that would end it anyway
        with watcher.connect() as watch:
            while (left := watch.execute(running, {"marker": f"%{marker}%"}).scalar()) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert left == 0, "the statement kept running on the server after the client closed its connection"
    finally:
        engine.dispose()
        watcher.dispose()
