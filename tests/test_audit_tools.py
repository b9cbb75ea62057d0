"""Auditors' tools on a real audit trail: tail, query, OCSF export."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from tests.conftest import sample_event

from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.ocsf import CLASS_UID, REQUIRED, missing_required
from cedargate.audit.record import EventRecord
from cedargate.audit.verify import verify_log
from cedargate.cli import main
from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def trail(runtime: Runtime) -> Path:
    """Four calls: an allowed read, an allowed write, a denied prod write, bad arguments."""
    async with Client(build_server(runtime)) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        await client.call_tool(
            "repo_write_file", {"repository": "acme/web", "branch": "agent/q", "path": "a.txt", "content": "a"}
        )
        await client.call_tool(
            "repo_write_file", {"repository": "acme/payments", "branch": "agent/q", "path": "a.txt", "content": "a"}
        )
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": 3})
    return runtime.config.audit.path


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_query_by_decision_and_environment_finds_the_denied_prod_write(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "query", "--log", str(trail), "--decision", "deny", "--environment", "prod", "--json"]) == 0
    [event] = _json_lines(capsys.readouterr().out)
    assert event["tool"] == "repo_write_file"
    assert event["resource"]["id"] == "acme/payments"


async def test_query_by_agent_user_team_task_and_tool(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "query", "--log", str(trail), "--agent", "codex-demo", "--user", "alice", "--team", "storefront"]
    main([*argv, "--task", "demo-timeout", "--tool", "repo_read_file", "--json"])
    assert [e["outcome"] for e in _json_lines(capsys.readouterr().out)] == ["succeeded", "invalid_arguments"]
    main(["audit", "query", "--log", str(trail), "--agent", "someone-else", "--json"])
    assert _json_lines(capsys.readouterr().out) == []


async def test_query_by_changed_path_and_path_class(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["audit", "query", "--log", str(trail), "--changed-path", "a.txt", "--json"])
    written = _json_lines(capsys.readouterr().out)
    assert [(e["resource"]["id"], e["outcome"]) for e in written] == [
        ("acme/web", "succeeded"),
        ("acme/payments", "denied"),
    ]
    main(["audit", "query", "--log", str(trail), "--changed-path", "README.md", "--json"])
    assert _json_lines(capsys.readouterr().out) == []  # read, never changed
    main(["audit", "query", "--log", str(trail), "--changed-path", "a.txt/", "--json"])
    assert _json_lines(capsys.readouterr().out) == []  # a folder: nothing in it changed
    main(["audit", "query", "--log", str(trail), "--changed-path", "a.t", "--json"])
    assert _json_lines(capsys.readouterr().out) == []  # exact, not a prefix
    main(["audit", "query", "--log", str(trail), "--path-class", "ci", "--json"])
    assert _json_lines(capsys.readouterr().out) == []


async def test_a_path_class_the_config_does_not_define_is_noted(
    trail: Path, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(runtime.config.base_dir / "cedargate.toml")
    assert main(["--config", config, "audit", "query", "--log", str(trail), "--path-class", "CI"]) == 0
    assert "note: `CI` is not a path class of the config (defined: `ci`)" in capsys.readouterr().err
    assert main(["--config", config, "audit", "query", "--log", str(trail), "--path-class", "ci"]) == 0
    assert "note:" not in capsys.readouterr().err


async def test_query_by_time_range_is_half_open(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = _json_lines(trail.read_text())
    second, fourth = events[1]["time"], events[3]["time"]
    main(["audit", "query", "--log", str(trail), "--since", second, "--until", fourth, "--json"])
    assert [e["event_id"] for e in _json_lines(capsys.readouterr().out)] == [e["event_id"] for e in events[1:3]]


async def test_a_time_without_a_zone_is_refused(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "query", "--log", str(trail), "--since", "2026-01-01T00:00"])
    assert "has no time zone" in capsys.readouterr().err


async def test_a_date_with_z_is_the_start_of_that_day_in_utc(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = _json_lines(trail.read_text())[0]["time"][:10]
    main(["audit", "query", "--log", str(trail), "--since", f"{day}Z", "--json"])
    everything = _json_lines(capsys.readouterr().out)
    main(["audit", "query", "--log", str(trail), "--until", f"{day}Z", "--json"])
    assert everything == _json_lines(trail.read_text()) and _json_lines(capsys.readouterr().out) == []
    with pytest.raises(SystemExit):
        main(["audit", "query", "--log", str(trail), "--since", day])
    assert "has no time zone: add `Z` or an offset (`2026-01-31Z`" in capsys.readouterr().err


async def test_tail_prints_the_last_events_one_per_line(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "tail", "--log", str(trail), "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = _json_lines(trail.read_text())
    assert len(lines) == 2
    assert lines[0].endswith(events[2]["event_id"]) and "denied" in lines[0] and "acme/payments@prod" in lines[0]
    assert lines[1].endswith(events[3]["event_id"]) and "invalid_arguments" in lines[1]


async def test_ocsf_export_has_every_required_field_and_the_determining_policies(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ocsf.jsonl"
    assert main(["audit", "export", "--format", "ocsf", "--log", str(trail), "--output", str(out)]) == 0
    records = _json_lines(out.read_text())
    events = _json_lines(trail.read_text())
    assert len(records) == len(events)
    for record, event in zip(records, events, strict=True):
        assert missing_required(record) == [], record
        assert set(REQUIRED) <= set(record)
        assert record["class_uid"] == CLASS_UID and record["category_uid"] == 6
        assert record["type_uid"] == CLASS_UID * 100 + record["activity_id"]
        assert record["metadata"]["uid"] == event["event_id"]
        assert isinstance(record["time"], int)
    read, write, denied, invalid = records
    assert read["activity_id"] == 2 and write["activity_id"] == 3
    assert read["actor"]["authorizations"] == [
        {
            "decision": "allow",
            "policy": {
                "uid": "reads-allowed",
                "name": "reads-allowed",
                "desc": "reading code and cloud state is allowed for every agent",
            },
        }
    ]
    assert denied["status_id"] == 2
    assert denied["actor"]["authorizations"][0]["decision"] == "deny"
    assert denied["actor"]["authorizations"][0]["policy"]["uid"] == "prod-writes-forbidden"
    assert denied["actor"]["user"]["name"] == "alice" and denied["actor"]["app_name"] == "codex-demo"
    assert invalid["actor"]["authorizations"] == []


def test_a_line_that_is_not_json_stops_a_query_with_its_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text('{"event_id": "a", "time": "2026-01-01T00:00:00+00:00"}\nnot json\n')
    assert main(["audit", "query", "--log", str(log)]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err


def test_following_prints_only_whole_lines_appended_since_the_last_look(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cedargate.audit.query import AuditFilter
    from cedargate.cli.audit import _print_appended

    log = tmp_path / "audit.jsonl"
    first = {"event_id": "a", "time": "2026-01-01T00:00:00+00:00", "tool": "t", "outcome": "succeeded"}
    log.write_text(json.dumps(first) + "\n")
    offset = log.stat().st_size
    second = {**first, "event_id": "b"}
    with open(log, "a") as handle:
        handle.write(json.dumps(second) + "\n" + '{"event_id": "c", "ti')
    offset = _print_appended(log, offset, AuditFilter(), as_json=True)
    assert [e["event_id"] for e in _json_lines(capsys.readouterr().out)] == ["b"]
    with open(log, "a") as handle:
        handle.write('me": "2026-01-01T00:00:01+00:00"}\n')
    _print_appended(log, offset, AuditFilter(), as_json=True)
    assert [e["event_id"] for e in _json_lines(capsys.readouterr().out)] == ["c"]


def test_a_log_recovered_from_a_torn_write_is_read_whole_by_query_tail_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        log.append(EventRecord.of(sample_event(1)))
        with open(path, "ab") as dying:  # a server killed in the middle of its line
            dying.write(b'{"event_id":"e2","time":"2026-')
        log.append(EventRecord.of(sample_event(3)))  # recovers: a segment record names the torn bytes
    assert verify_log(path).segments == 1
    assert main(["audit", "query", "--log", str(path), "--json"]) == 0
    assert [json.loads(line)["event_id"] for line in capsys.readouterr().out.splitlines()] == ["e1", "e3"]
    assert main(["audit", "tail", "--log", str(path), "-n", "5"]) == 0
    assert capsys.readouterr().out.count("\n") == 2
    assert main(["audit", "export", "--log", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_torn_line_no_segment_record_names_still_stops_a_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        log.append(EventRecord.of(sample_event(1)))
    with open(path, "ab") as editor:  # a cut line with a complete event after it: an edit, not a crash
        editor.write(b'{"event_id":"e2","time":"2026-\n')
    with open(path, "ab") as more:
        more.write(json.dumps(sample_event(3).model_dump(mode="json")).encode() + b"\n")
    assert main(["audit", "query", "--log", str(path)]) == 2
    assert "line 2 is not JSON: run `cedargate audit verify" in capsys.readouterr().err


def test_a_torn_last_line_no_server_recovered_yet_is_noted_and_the_events_before_it_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        for n in (1, 2):
            log.append(EventRecord.of(sample_event(n)))
    with open(path, "ab") as dying:  # a crash in the middle of event 3, before any restart
        dying.write(b'{"event_id":"e3","time":"2026-')
    assert verify_log(path).torn_tail == 3
    for command, shown in ((["query", "--json"], 2), (["tail", "-n", "5"], 2), (["export"], 2)):
        assert main(["audit", *command, "--log", str(path)]) == 0, command
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == shown, command
        assert f"audit log `{path}` line 3 is a torn write" in err, command


def test_following_across_a_copytruncate_rotation_reads_the_new_file_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cedargate.cli.audit as audit_cli

    path, written = tmp_path / "audit.jsonl", tmp_path / "written.jsonl"
    with closing(JsonlAuditLog(written)) as log:
        for n in range(1, 9):
            log.append(EventRecord.of(sample_event(n)))
    lines = written.read_text().splitlines(keepends=True)  # each ends in its own hash
    path.write_text("".join(lines[:3]))

    def append(*chunk: str) -> None:
        with open(path, "a") as handle:
            handle.write("".join(chunk))

    def copytruncate() -> None:
        (tmp_path / "audit.jsonl.1").write_bytes(path.read_bytes())
        with open(path, "r+b") as handle:
            handle.truncate(0)

    rounds = [
        lambda: append(lines[3]),
        lambda: (copytruncate(), append(lines[4])),  # shorter than the offset followed so far
        lambda: append(lines[5]),
        lambda: (copytruncate(), append(*lines[6:8])),  # past the offset again within one poll
        lambda: None,
    ]

    def next_round(_: float) -> None:
        if not rounds:
            raise KeyboardInterrupt
        rounds.pop(0)()

    monkeypatch.setattr(audit_cli.time, "sleep", next_round)
    assert main(["audit", "tail", "-n", "1", "--follow", "--log", str(path), "--json"]) == 130
    out, err = capsys.readouterr()
    assert [e["event_id"] for e in _json_lines(out)] == ["e3", "e4", "e5", "e6", "e7", "e8"]
    assert err.count(f"audit log `{path}` was truncated or replaced") == 2
