"""A crash in the middle of an audit write: the torn tail is named, the log continues in a new
segment linked to the last complete event, nothing before it is lost, tampering still shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client
from tests.adversarial.harness import FUZZ, chained_records, make_tree, start_http_server
from tests.conftest import ROOT, sample_event

from cedargate.audit.event import AuditEvent
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.audit.segments import is_segment_record
from cedargate.audit.verify import verify_log
from cedargate.errors import AuditWriteError


def _event(n: int) -> AuditEvent:
    return sample_event(n, arguments={"path": f"f{n}", "text": "é" * (n % 3)})


def _write(path: Path, count: int, start: int = 0) -> None:
    log = JsonlAuditLog(path)
    for n in range(start, start + count):
        log.append(EventRecord.of(_event(n)))
    log.close()


def _torn(path: Path, fragment: bytes = b'{"event_id":"torn","ha') -> None:
    with open(path, "ab") as handle:
        handle.write(fragment)


@pytest.fixture
def torn_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    _write(path, 4)
    _torn(path)
    return path


def test_a_torn_tail_is_reported_by_verify_before_restart(torn_log: Path) -> None:
    report = verify_log(torn_log)
    assert report.ok and report.events == 4
    assert report.torn_tail == 5


def test_on_restart_the_torn_line_is_named_and_a_new_segment_links_to_the_last_complete_event(torn_log: Path) -> None:
    before = torn_log.read_bytes()
    last_complete = json.loads(before.splitlines()[3])
    _write(torn_log, 2, start=4)
    after = torn_log.read_bytes()
    assert after.startswith(before), "recovery only appends; nothing before it changes"
    lines = after.splitlines()
    segment = json.loads(lines[5])
    assert is_segment_record(segment)
    assert segment["prev_hash"] == last_complete["hash"]
    [torn] = segment["torn"]
    assert torn["offset"] == before.rindex(b"\n") + 1 and torn["length"] == len(b'{"event_id":"torn","ha')
    assert json.loads(lines[6])["prev_hash"] == segment["hash"]
    report = verify_log(torn_log)
    assert (report.ok, report.events, report.segments, report.torn_tail) == (True, 6, 1, None)
    assert [r["event_id"] for r in chained_records(torn_log)] == [f"e{n}" for n in range(6)]


def test_a_crash_while_writing_the_segment_record_is_recovered_too(torn_log: Path) -> None:
    JsonlAuditLog(torn_log).close()
    data = torn_log.read_bytes()
    torn_log.write_bytes(data[: len(data) - 20])  # the segment record itself torn
    _write(torn_log, 1, start=4)
    report = verify_log(torn_log)
    assert report.ok and report.events == 5 and report.segments == 1


def _recovered(torn_log: Path) -> list[bytes]:
    _write(torn_log, 2, start=4)
    return torn_log.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("edit-before", "altered"),
        ("edit-torn", "does not name the torn bytes"),
        ("drop-segment", "not valid JSON"),
        ("edit-segment", "segment record was altered"),
        ("drop-event-before-torn", "does not link"),
    ],
)
def test_tampering_around_a_segment_is_still_detected(torn_log: Path, tamper: str, problem: str) -> None:
    lines = _recovered(torn_log)
    if tamper == "edit-before":
        lines[1] = lines[1].replace(b'"f1"', b'"fX"')
    elif tamper == "edit-torn":
        lines[4] = lines[4].replace(b"torn", b"tore")
    elif tamper == "drop-segment":
        del lines[5]
    elif tamper == "edit-segment":
        lines[5] = lines[5].replace(b'"record":"segment"', b'"record":"segment","x":1')
    elif tamper == "drop-event-before-torn":
        del lines[3]
    torn_log.write_bytes(b"".join(lines))
    report = verify_log(torn_log)
    assert not report.ok
    assert problem in (report.problem or "")


def test_a_torn_line_in_the_middle_without_a_segment_record_fails_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"torn\n' + lines[1])
    report = verify_log(path)
    assert not report.ok and report.line == 2


def test_a_segment_record_with_no_torn_line_before_it_fails_verify(torn_log: Path) -> None:
    lines = _recovered(torn_log)
    del lines[4]  # the torn bytes removed, the segment record left claiming them
    torn_log.write_bytes(b"".join(lines))
    assert not verify_log(torn_log).ok


def test_a_foreign_last_line_still_refuses_start_up(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 1)
    _torn(path, b"[1, 2]\n")
    with pytest.raises(AuditWriteError, match="foreign or edited line"):
        JsonlAuditLog(path)


def test_a_cut_anywhere_loses_nothing_before_the_last_complete_event(tmp_path: Path) -> None:
    original = tmp_path / "original.jsonl"
    _write(original, 5)
    data = original.read_bytes()
    ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]

    @FUZZ
    @given(cut=st.integers(0, len(data)))
    def run(cut: int) -> None:
        path = tmp_path / "cut.jsonl"
        path.write_bytes(data[:cut])
        complete = sum(1 for end in ends if end <= cut + 1)  # a whole record missing only its newline counts
        _write(path, 1, start=100)
        report = verify_log(path)
        assert report.ok, report
        records = chained_records(path)
        assert [r["event_id"] for r in records] == [f"e{n}" for n in range(complete)] + ["e100"]

    run()


@pytest.mark.anyio
async def test_a_server_killed_with_sigkill_mid_load_restarts_and_its_chain_verifies(tmp_path: Path) -> None:
    config = make_tree(tmp_path)
    audit = tmp_path / "audit.jsonl"
    server = await start_http_server(config, tmp_path / "server.log")
    acknowledged: list[str] = []
    enough = anyio.Event()
    denied = {"repository": "acme/payments", "branch": "agent/k", "path": "a.txt", "content": "x"}

    async def agent() -> None:
        async with Client(server.url) as client:
            while True:
                result = await client.call_tool("repo_write_file", denied)
                # A denial names its audit event: that event must survive the crash.
                text = result.content[0].text  # type: ignore[union-attr]
                acknowledged.append(text.rsplit("audit event ", 1)[1].rstrip(")"))
                if len(acknowledged) >= 12:
                    enough.set()
                await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(_swallow_disconnect, agent)
                await enough.wait()
                server.kill()  # mid-load: calls are in flight
    finally:
        server.stop()
    kept = {r["event_id"] for r in chained_records(audit)}
    assert set(acknowledged) <= kept, "an event the agent was told about was lost"
    # Whatever the kill left (a whole line or a torn one), plus a torn write made certain:
    _torn(audit, b'{"event_id":"killed-mid-write","principal":{"age')
    restarted = await start_http_server(config, tmp_path / "server.log")
    try:
        with anyio.fail_after(30):
            async with Client(restarted.url) as client:
                after = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    finally:
        restarted.stop()
    assert after.is_error is False
    report = verify_log(audit)
    assert report.ok and report.segments >= 1, report
    assert {r["event_id"] for r in chained_records(audit)} >= kept


async def _swallow_disconnect(agent: object) -> None:
    """An agent whose server was killed under it: its connection errors are the expected end."""
    try:
        await agent()  # type: ignore[operator]
    except Exception:
        return


def test_complete_lines_merged_into_one_are_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 4)
    data = path.read_bytes()
    second_last_end = data.rstrip(b"\n").rindex(b"\n")
    path.write_bytes(data[:second_last_end] + b"\x00" + data[second_last_end + 1 :])
    report = verify_log(path)
    assert not report.ok and report.line == 3
    with pytest.raises(AuditWriteError, match="foreign or edited line"):
        JsonlAuditLog(path)


def test_a_blank_line_is_not_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n")
    assert not verify_log(path).ok
    with pytest.raises(AuditWriteError):
        JsonlAuditLog(path)


@pytest.mark.parametrize("recovered", [False, True])
def test_audit_verify_command_names_a_torn_tail_and_accepts_a_recovered_log(torn_log: Path, recovered: bool) -> None:
    if recovered:
        _write(torn_log, 1, start=4)
    result = subprocess.run(
        [sys.executable, "-m", "cedargate", "audit", "verify", "--log", str(torn_log)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "server"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0
    if recovered:
        assert "5 events" in result.stdout and "1 segment(s) after torn writes" in result.stdout
    else:
        assert "line 5 is a torn write" in result.stdout
