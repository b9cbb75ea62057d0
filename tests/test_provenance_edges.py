"""Provenance at its edges: a session longer than any recursion limit, and events the trail never got."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from tests.conftest import audit_events

from cedargate.audit.record import EventRecord
from cedargate.cli import main
from cedargate.errors import AuditWriteError
from cedargate.runtime import Runtime
from cedargate.server import build_server
from cedargate.session import SessionState

pytestmark = pytest.mark.anyio

README = ("repo_read_file", {"repository": "acme/web", "path": "README.md"})
APP = ("repo_read_file", {"repository": "acme/web", "path": "src/app.py"})


def _write(path: str) -> tuple[str, dict[str, str]]:
    return "repo_write_file", {"repository": "acme/web", "branch": "agent/prov", "path": path, "content": "a\n"}


def _fail_the_audit_line_of(runtime: Runtime, path: str) -> list[str]:
    """The primary log refuses the one event whose arguments name ``path`` (a disk filling, then freed)."""
    primary = runtime.audit.primary
    append = primary.append
    refused: list[str] = []

    def failing(record: EventRecord) -> Any:
        if not refused and (record.fields.get("arguments") or {}).get("path") == path:
            refused.append(record.fields["event_id"])
            raise AuditWriteError(f"audit log `{primary.path}` could not be written: No space left on device")
        return append(record)

    primary.append = failing  # type: ignore[method-assign]
    return refused


def _provenance(runtime: Runtime, capsys: pytest.CaptureFixture[str], event_id: str, *json_flag: str) -> str:
    """What `cedargate provenance EVENT_ID --log LOG` prints (exit 0 asserted)."""
    assert main(["provenance", event_id, "--log", str(runtime.config.audit.path), *json_flag]) == 0
    return capsys.readouterr().out


async def _run(runtime: Runtime, calls: list[tuple[str, dict[str, str]]]) -> None:
    async with Client(build_server(runtime)) as client:
        for tool, args in calls:
            await client.call_tool(tool, args)


async def test_a_session_longer_than_the_recursion_limit_is_traced_flat(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    """700 changes after one read: once past Python's recursion limit and the JSON serializer's depth."""
    writes = 700
    payments = {"repository": "acme/payments", "branch": "agent/x", "path": "a", "content": "a"}
    await _run(runtime, [README, *[("repo_write_file", payments)] * writes])
    events = audit_events(runtime.config.audit.path)
    read, changes = events[0], events[1:]
    last = changes[-1]

    chain = json.loads(_provenance(runtime, capsys, last["event_id"], "--json"))
    assert chain["event_id"] == last["event_id"] and chain["depth"] == 0
    earlier = chain["sources"]
    assert [c["event_id"] for c in earlier] == [c["event_id"] for c in reversed(changes[:-1])]
    assert [c["depth"] for c in earlier] == list(range(1, writes))
    assert all(c["event"] is not None for c in earlier)
    first = earlier[-1]
    assert [(s["event_id"], s["sources"]) for s in first["sources"]] == [(read["event_id"], [])]
    assert all(c["sources"] == [] for c in earlier[:-1])

    lines = _provenance(runtime, capsys, last["event_id"]).splitlines()
    assert len(lines) == writes + 1
    assert last["event_id"] in lines[0]
    assert lines[1].startswith("  <- 1 back: ") and changes[-2]["event_id"] in lines[1]
    assert lines[-2].startswith(f"  <- {writes - 1} back: ") and changes[0]["event_id"] in lines[-2]
    assert lines[-1].startswith("    <- ") and "path=README.md" in lines[-1]


async def test_a_change_whose_audit_line_failed_keeps_the_reads_for_the_next_one(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = _fail_the_audit_line_of(runtime, "one.txt")
    await _run(runtime, [README, _write("one.txt"), _write("two.txt")])
    read, write_two = audit_events(runtime.config.audit.path)
    assert refused and refused[0] not in {read["event_id"], write_two["event_id"]}
    # The change the trail lacks is no source; the read before it is still one.
    assert write_two["context_sources"] == [read["event_id"]]
    lines = _provenance(runtime, capsys, write_two["event_id"]).splitlines()
    assert len(lines) == 2 and "path=README.md" in lines[1]
    assert "missing from the audit log" not in "\n".join(lines)


async def test_a_later_change_still_links_the_last_written_one_past_a_failed_one(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_the_audit_line_of(runtime, "two.txt")
    await _run(runtime, [README, _write("one.txt"), APP, _write("two.txt"), _write("three.txt")])
    read, write_one, read_app, write_three = audit_events(runtime.config.audit.path)
    assert write_three["context_sources"] == [write_one["event_id"], read_app["event_id"]]
    chain = json.loads(_provenance(runtime, capsys, write_three["event_id"], "--json"))
    assert [(s["event_id"], s["depth"]) for s in chain["sources"]] == [
        (read_app["event_id"], 0),
        (write_one["event_id"], 1),
    ]
    assert [s["event_id"] for s in chain["sources"][1]["sources"]] == [read["event_id"]]


async def test_a_read_whose_audit_line_failed_is_no_source(runtime: Runtime) -> None:
    _fail_the_audit_line_of(runtime, "src/app.py")
    await _run(runtime, [README, APP, _write("one.txt")])
    read, write = audit_events(runtime.config.audit.path)
    assert write["context_sources"] == [read["event_id"]]


def test_changes_written_concurrently_are_both_linked_by_the_next() -> None:
    """Sources are taken before a change runs and count once its event is written: a concurrent one is not lost."""
    session = SessionState()
    session.record_read("r1")
    sources_a, base_a = session.sources_of_change()
    session.record_read("r2")
    sources_b, base_b = session.sources_of_change()
    session.record_read("r3")  # read while both ran: neither lists it
    session.changed("b", base_b)
    session.changed("a", base_a)
    assert (sources_a, sources_b) == (["r1"], ["r1", "r2"])
    assert session.sources_of_change()[0] == ["b", "a", "r3"]
    session.changed("c", session.sources_of_change()[1])
    assert session.sources_of_change()[0] == ["c"]
