"""The `database` audit sink: every event lands in the store's `audit_events` table, once.

Runs on SQLite and on PostgreSQL. The store failing for a while is a real failure: the table
is renamed away under the running server, so every insert fails until it is renamed back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select, text
from tests.conftest import audit_events, sample_event
from tests.governed_tree import store_toml
from tests.store_fixtures import local_postgres

from cedargate.audit.database import DatabaseSink
from cedargate.audit.event import AuditEvent, event_hash
from cedargate.cli import main
from cedargate.config import StoreConfig, load_config
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server
from cedargate.store import Store, open_store
from cedargate.store.tables import audit_events as audit_table

pytestmark = pytest.mark.anyio

DATABASE_SINK = '\n[[audit.sinks]]\nkind = "database"\n'


def _runtime_on(tree: Path, store_config: StoreConfig) -> Runtime:
    path = tree / "cedargate.toml"
    configured = path.read_text().replace(
        '[audit]\npath = "audit.jsonl"\n', f'[audit]\npath = "audit.jsonl"\n{DATABASE_SINK}'
    )
    path.write_text(configured + "\n" + store_toml(store_config))
    return build_runtime(load_config(path, environ={}))


@pytest.fixture
def runtime(tree: Path, store_config: StoreConfig) -> Iterator[Runtime]:
    """The demo server with its store on the backend under test and the database sink configured."""
    rt = _runtime_on(tree, store_config)
    yield rt
    rt.close()


def _rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(audit_table).order_by(audit_table.c.id))]


async def _read(client: Client) -> None:
    await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_every_call_lands_in_the_table_with_the_columns_auditors_filter_on(runtime: Runtime, mode: str) -> None:
    async with Client(build_server(runtime), mode=mode) as client:
        await _read(client)
        await client.call_tool(
            "repo_write_file", {"repository": "acme/payments", "branch": "agent/x", "path": "a", "content": "a"}
        )
    runtime.audit.flush()
    rows = _rows(runtime.store)
    read, write = audit_events(runtime.config.audit.path)
    assert [r["event_id"] for r in rows] == [read["event_id"], write["event_id"]]
    first, second = rows
    assert (first["agent"], first["on_behalf_of"], first["team"]) == ("codex-demo", "alice", "storefront")
    assert (first["tool"], first["effect"], first["outcome"], first["environment"]) == (
        "repo_read_file", "allow", "succeeded", "dev",
    )  # fmt: skip
    assert (second["tool"], second["effect"], second["outcome"], second["environment"]) == (
        "repo_write_file", "deny", "denied", "prod",
    )  # fmt: skip
    assert first["task"] == read["task"] == "demo-timeout" and first["session_id"] == read["session_id"]
    assert first["time"].isoformat() == read["time"]
    # The stored JSON is the event exactly as the primary chained it, and its hash still checks.
    for row, event in zip(rows, (read, write), strict=True):
        assert json.loads(row["event"]) == event
        assert (row["hash"], row["prev_hash"]) == (event["hash"], event["prev_hash"])
        assert event_hash(json.loads(row["event"])) == row["hash"]
    assert second["prev_hash"] == first["hash"]
    [status] = runtime.audit.status()
    assert status.name == "database" and status.delivered == 2 and status.pending == 0


def _rename(store: Store, old: str, new: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_a_store_that_fails_for_a_while_catches_up_without_losing_or_duplicating_events(
    runtime: Runtime,
) -> None:
    async with Client(build_server(runtime)) as client:
        await _read(client)
        runtime.audit.flush()
        _rename(runtime.store, "audit_events", "audit_events_away")
        await _read(client)
        await _read(client)
        runtime.audit.flush()
        [failing] = runtime.audit.status()
        _rename(runtime.store, "audit_events_away", "audit_events")
        assert len(_rows(runtime.store)) == 1  # the outage held back the two events after the first
        await _read(client)
        runtime.audit.flush()
        [recovered] = runtime.audit.status()
    primary = [e["event_id"] for e in audit_events(runtime.config.audit.path)]
    assert len(primary) == 4  # the primary never stopped: every call ran and was recorded
    assert [r["event_id"] for r in _rows(runtime.store)] == primary
    assert failing.pending == 2 and failing.failures > 0 and "audit_events" in (failing.last_error or "")
    assert recovered.pending == 0 and recovered.delivered == 4 and recovered.last_error is None


async def test_a_stopped_postgresql_server_is_caught_up_on_when_it_is_back(tree: Path) -> None:
    with local_postgres() as server:
        runtime = _runtime_on(tree, StoreConfig(url=server.create_database()))
        try:
            async with Client(build_server(runtime)) as client:
                await _read(client)
                runtime.audit.flush()
                server.stop()
                await _read(client)  # refused (the store holds the revocations), and audited in the file
                await _read(client)
                runtime.audit.flush()
                [down] = runtime.audit.status()
                server.start()
                await _read(client)
                runtime.audit.flush()
                [back] = runtime.audit.status()
            primary = audit_events(runtime.config.audit.path)
            stored = [r["event_id"] for r in _rows(runtime.store)]
        finally:
            runtime.close()
    assert [e["outcome"] for e in primary] == ["succeeded", "failed", "failed", "succeeded"]
    assert stored == [e["event_id"] for e in primary]
    assert down.pending == 2 and down.failures > 0 and down.last_error is not None
    assert back.pending == 0 and back.delivered == 4


async def test_events_kept_from_a_failed_delivery_are_written_when_the_server_stops(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        _rename(runtime.store, "audit_events", "audit_events_away")
        await _read(client)
        runtime.audit.flush()
        _rename(runtime.store, "audit_events_away", "audit_events")
    runtime.audit.close()  # a stopping server delivers what its sinks still hold
    [event] = audit_events(runtime.config.audit.path)
    assert [r["event_id"] for r in _rows(runtime.store)] == [event["event_id"]]


def _event(n: int) -> AuditEvent:
    return sample_event(
        n,
        time=f"2026-01-01T00:00:0{n}+00:00",
        principal={"agent": "a", "team": "t", "on_behalf_of": "u", "mode": "interactive"},
        arguments={},
        duration_ms=1.0,
        hash=f"{n:064d}",
    )


def test_a_batch_retried_after_it_was_stored_is_not_stored_twice(store_config: StoreConfig) -> None:
    store = open_store(store_config)
    try:
        sink = DatabaseSink(store)
        sink.emit([_event(1)])
        sink.emit([_event(1), _event(2)])  # the fan-out retries a batch whose commit it never saw
        sink.emit([_event(1), _event(2)])
        rows = _rows(store)
    finally:
        store.close()
    assert [r["event_id"] for r in rows] == ["e1", "e2"]
    assert rows[0]["effect"] is None and rows[0]["environment"] is None  # a call refused before a decision


async def test_the_primary_stays_fail_closed_and_the_table_gets_nothing_it_refused(runtime: Runtime) -> None:
    runtime.audit.primary.close()
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    runtime.audit.flush()
    assert result.is_error and "audit log" in str(result.content) and "nothing was run" in str(result.content)
    assert _rows(runtime.store) == []
    [status] = runtime.audit.status()
    assert status.delivered == 0 and status.pending == 0


def _cli_query(tree: Path, capsys: pytest.CaptureFixture[str], *filters: str) -> list[dict[str, Any]]:
    assert main(["--config", str(tree / "cedargate.toml"), "audit", "query", *filters, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_audit_query_reads_the_table_with_the_same_filters_as_the_file(
    runtime: Runtime, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(build_server(runtime)) as client:
        await _read(client)
        await client.call_tool(
            "repo_write_file", {"repository": "acme/payments", "branch": "agent/x", "path": "a", "content": "a"}
        )
        await _read(client)
        await client.call_tool(
            "repo_write_file",
            {"repository": "acme/web", "branch": "agent/x", "path": ".github/workflows/x.yml", "content": "a"},
        )
    runtime.audit.flush()
    first = audit_events(runtime.config.audit.path)[0]["time"]
    for filters in (
        (),
        ("--decision", "deny"),
        ("--tool", "repo_read_file", "--limit", "1"),
        ("--user", "alice", "--environment", "dev", "--since", first),
        ("--until", first),
        ("--agent", "someone-else"),
        ("--changed-path", "a"),
        ("--path-class", "ci", "--limit", "1"),
        ("--changed-path", ".github/"),
    ):
        from_file = _cli_query(tree, capsys, *filters)
        assert _cli_query(tree, capsys, "--source", "database", *filters) == from_file, filters
    assert len(_cli_query(tree, capsys, "--source", "database", "--tool", "repo_read_file")) == 2
    assert [e["tool"] for e in _cli_query(tree, capsys, "--changed-path", ".github/")] == ["repo_write_file"]
    [held] = _cli_query(tree, capsys, "--source", "database", "--path-class", "ci")
    assert held["outcome"] == "approval_required" and held["changes"]["paths"] == [".github/workflows/x.yml"]


def test_audit_query_from_a_store_without_the_table_says_to_upgrade(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tree / "cedargate.toml"
    path.write_text(path.read_text() + DATABASE_SINK + "\n" + store_toml(StoreConfig(path=tmp_path / "empty.db")))
    assert main(["--config", str(path), "audit", "query", "--source", "database"]) != 0
    error = capsys.readouterr().err
    assert "`audit_events` table could not be read" in error and "cedargate db upgrade" in error


async def test_a_tool_name_too_long_for_its_column_is_stored_cut_and_still_found_exactly(
    runtime: Runtime, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_name = "no-such-tool-" + "x" * 600 + "\x00"
    async with Client(build_server(runtime)) as client:
        with pytest.raises(MCPError):  # unknown tools are protocol errors, audited all the same
            await client.call_tool(long_name, {})
        await _read(client)
    runtime.audit.flush()
    unknown, _ = _rows(runtime.store)
    assert unknown["outcome"] == "unknown_tool" and json.loads(unknown["event"])["tool"] == long_name
    assert unknown["tool"] == long_name[:256]
    found = _cli_query(tree, capsys, "--source", "database", "--tool", long_name)
    assert [e["event_id"] for e in found] == [unknown["event_id"]]
    assert _cli_query(tree, capsys, "--source", "database", "--tool", long_name[:-1] + "y") == []
    [status] = runtime.audit.status()
    assert status.delivered == 2 and status.failures == 0


def _verify_database(runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--config", str(runtime.config.base_dir / "cedargate.toml"), "audit", "verify", "--database"])
    return code, capsys.readouterr().out


async def test_audit_verify_checks_the_table_against_the_log(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(build_server(runtime)) as client:
        for _ in range(3):
            await _read(client)
    runtime.audit.flush()
    first, second, third = audit_events(runtime.config.audit.path)
    assert runtime.store is not None
    code, out = _verify_database(runtime, capsys)
    assert code == 0 and "3 rows of `audit_events` match the log" in out

    with runtime.store.engine.begin() as connection:  # delivery lost for one event: counted, not failed
        connection.execute(audit_table.delete().where(audit_table.c.event_id == third["event_id"]))
    code, out = _verify_database(runtime, capsys)
    assert code == 0 and "1 events of the log are not in the table" in out
    assert "not delivered yet" in out and "deleted from the table" in out  # the sink lags; a deletion looks alike

    edited = json.dumps({**first, "outcome": "denied"}, sort_keys=True, separators=(",", ":"))
    with runtime.store.engine.begin() as connection:
        connection.execute(audit_table.update().where(audit_table.c.event_id == first["event_id"]).values(event=edited))
    code, out = _verify_database(runtime, capsys)
    assert code == 1
    assert f"event {first['event_id']}: the row was altered" in out
    assert second["event_id"] not in out


async def test_audit_verify_names_a_row_added_to_the_table(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(build_server(runtime)) as client:
        await _read(client)
    runtime.audit.flush()
    assert runtime.store is not None
    [row] = _rows(runtime.store)
    forged = {**json.loads(row["event"]), "event_id": "forged-event", "outcome": "succeeded"}
    forged["hash"] = event_hash(forged)  # consistent in itself, unknown to the log
    text = json.dumps(forged, sort_keys=True, separators=(",", ":"))
    fields = {k: v for k, v in row.items() if k != "id"}
    with runtime.store.engine.begin() as connection:
        connection.execute(
            audit_table.insert().values(**{**fields, "event_id": "forged-event", "event": text, "hash": forged["hash"]})
        )
    code, out = _verify_database(runtime, capsys)
    assert code == 1
    assert "event forged-event: the audit log has no such event" in out


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("outcome", "succeeded"),
        ("effect", "allow"),
        ("agent", "someone-else"),
        ("environment", "dev"),
        ("time", datetime(2020, 1, 1, tzinfo=UTC)),
        ("prev_hash", "f" * 64),
    ],
)
async def test_audit_verify_names_a_filter_column_edited_in_the_table(
    runtime: Runtime, tree: Path, capsys: pytest.CaptureFixture[str], column: str, value: object
) -> None:
    async with Client(build_server(runtime)) as client:
        await client.call_tool(
            "repo_write_file", {"repository": "acme/payments", "branch": "agent/x", "path": "a", "content": "a"}
        )
    runtime.audit.flush()
    [denied] = audit_events(runtime.config.audit.path)
    assert [e["event_id"] for e in _cli_query(tree, capsys, "--source", "database", "--outcome", "denied")] == [
        denied["event_id"]
    ]
    with runtime.store.engine.begin() as connection:  # the event JSON and its hash left alone
        connection.execute(
            audit_table.update().where(audit_table.c.event_id == denied["event_id"]).values({column: value})
        )
    code, out = _verify_database(runtime, capsys)
    assert code == 1
    assert f"event {denied['event_id']}: the row's columns were edited in the table: `{column}` reads" in out
