"""The audit trail: the chain verifies when intact and names the first line at fault when not;
the log fails closed when it cannot be written."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mcp import Client
from tests.conftest import ROOT, audit_events, sample_event

from cedargate.audit.event import GENESIS_HASH, AuditEvent
from cedargate.audit.event_id import new_event_id
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.audit.verify import verify_log
from cedargate.config import load_config
from cedargate.errors import AuditWriteError
from cedargate.git import git_text
from cedargate.runtime import build_runtime
from cedargate.server import build_server


def _event(n: int) -> AuditEvent:
    return sample_event(n)


@pytest.fixture
def log_with_five(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    for n in range(5):
        log.append(EventRecord.of(_event(n)))
    log.close()
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_intact_log_verifies_and_the_chain_is_recomputable(log_with_five: Path) -> None:
    report = verify_log(log_with_five)
    assert report.ok and report.events == 5
    previous = GENESIS_HASH
    for line in _lines(log_with_five):
        record = json.loads(line)
        body = {k: v for k, v in record.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert record["prev_hash"] == previous
        assert record["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
        previous = record["hash"]


def test_an_appended_event_reads_as_its_line_and_the_record_given_is_unchanged(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit.jsonl")
    given = EventRecord.of(_event(1))
    first, second = log.append(EventRecord.of(_event(0))), log.append(given)
    log.close()
    lines = [json.loads(line) for line in _lines(tmp_path / "audit.jsonl")]
    assert [first.event, second.event] == [AuditEvent.model_validate(line) for line in lines]
    assert second.event.prev_hash == first.hash == lines[0]["hash"] and first.prev_hash == GENESIS_HASH
    assert given == EventRecord.of(_event(1)) and "prev_hash" not in given.fields  # the writer's record is not chained
    assert second.event is second.event  # built once, when first read


def test_edited_line_fails_verify_at_that_line(log_with_five: Path) -> None:
    lines = _lines(log_with_five)
    lines[2] = lines[2].replace('"f2"', '"f2-edited"')
    log_with_five.write_text("".join(lines))
    report = verify_log(log_with_five)
    assert not report.ok
    assert (report.line, report.event_id) == (3, "e2")
    assert "altered" in (report.problem or "")


def test_deleted_line_fails_verify_at_the_line_after_it(log_with_five: Path) -> None:
    lines = _lines(log_with_five)
    del lines[1]
    log_with_five.write_text("".join(lines))
    report = verify_log(log_with_five)
    assert not report.ok
    assert (report.line, report.event_id) == (2, "e2")
    assert "removed, reordered" in (report.problem or "")


def test_reordered_lines_fail_verify(log_with_five: Path) -> None:
    lines = _lines(log_with_five)
    lines[1], lines[3] = lines[3], lines[1]
    log_with_five.write_text("".join(lines))
    report = verify_log(log_with_five)
    assert not report.ok
    assert report.line == 2


def test_a_reopened_log_continues_the_chain(log_with_five: Path) -> None:
    log = JsonlAuditLog(log_with_five)
    log.append(EventRecord.of(_event(5)))
    log.close()
    assert verify_log(log_with_five).events == 6


def test_a_log_ending_in_a_torn_line_continues_in_a_new_segment(log_with_five: Path) -> None:
    with open(log_with_five, "a") as handle:
        handle.write('{"event_id": "torn", "ha')
    log = JsonlAuditLog(log_with_five)
    log.append(EventRecord.of(_event(5)))
    log.close()
    report = verify_log(log_with_five)
    assert report.ok and report.events == 6 and report.segments == 1


def test_a_log_ending_in_a_foreign_line_refuses_to_open(log_with_five: Path) -> None:
    with open(log_with_five, "a") as handle:
        handle.write('{"not": "an event"}\n')
    with pytest.raises(AuditWriteError, match="foreign or edited line"):
        JsonlAuditLog(log_with_five)


@pytest.mark.parametrize(("edit", "exit_code"), [(False, 0), (True, 1)])
def test_audit_verify_command_exit_status_follows_the_verdict(log_with_five: Path, edit: bool, exit_code: int) -> None:
    if edit:
        log_with_five.write_text(log_with_five.read_text().replace('"f4"', '"f5"'))
    result = subprocess.run(
        [sys.executable, "-m", "cedargate", "audit", "verify", "--log", str(log_with_five), "--json"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "server"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == exit_code
    report = json.loads(result.stdout)
    assert report["ok"] is (not edit)
    if edit:
        assert report["line"] == 5


@pytest.mark.anyio
async def test_when_the_audit_disk_is_full_no_result_is_returned_and_nothing_more_runs(tree: Path) -> None:
    config_path = tree / "cedargate.toml"
    config_path.write_text(config_path.read_text().replace('path = "audit.jsonl"', 'path = "/dev/full"'))
    runtime = build_runtime(load_config(config_path, environ={}))
    write = {"repository": "acme/web", "branch": "agent/full", "path": "a.txt", "content": "a"}
    try:
        async with Client(build_server(runtime)) as client:
            first = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
            second = await client.call_tool("repo_write_file", write)
    finally:
        runtime.close()
    assert first.is_error is True
    assert "could not be written" in first.content[0].text  # type: ignore[union-attr]
    assert "acme/web" not in first.content[0].text  # type: ignore[union-attr]
    assert second.is_error is True
    assert "nothing was run" in second.content[0].text  # type: ignore[union-attr]
    assert git_text(tree / "repos/web", ["branch", "--list", "agent/full"]) == ""
    assert audit_events(tree / "audit.jsonl") == []


def test_event_ids_are_distinct_version_4_uuids_in_canonical_text() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
