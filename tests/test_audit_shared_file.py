"""Several servers on one host append to one audit file and still write one chain."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from tests.conftest import ROOT, audit_events, sample_event

from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.audit.verify import verify_log
from cedargate.errors import AuditWriteError
from cedargate.runtime import Runtime
from cedargate.server import build_server

WRITER = """
import sys
from pathlib import Path
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from tests.conftest import sample_event

log = JsonlAuditLog(Path(sys.argv[1]))
sys.stdin.readline()  # every writer starts together
for n in range(int(sys.argv[3])):
    log.append(EventRecord.of(sample_event(n, event_id=f"{sys.argv[2]}-{n}")))
"""


def test_writers_in_separate_processes_append_one_chain(tmp_path: Path) -> None:
    path, per_writer = tmp_path / "audit.jsonl", 300
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'server'}{os.pathsep}{ROOT}"}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(per_writer)], stdin=subprocess.PIPE, env=env
        )
        for name in ("a", "b", "c")
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.close()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    report = verify_log(path)
    assert report.ok, report.problem
    ids = [event["event_id"] for event in audit_events(path)]
    assert sorted(ids) == sorted(f"{w}-{n}" for w in "abc" for n in range(per_writer))


def test_two_logs_on_one_file_link_to_each_others_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = JsonlAuditLog(path), JsonlAuditLog(path)
    try:
        written = [log.append(EventRecord.of(sample_event(n))) for n, log in enumerate([first, second, second, first])]
    finally:
        first.close()
        second.close()
    assert [w.prev_hash for w in written[1:]] == [w.hash for w in written[:-1]]
    assert verify_log(path).ok


def test_a_tail_torn_by_another_writer_is_recovered_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        log.append(EventRecord.of(sample_event(1)))
        with open(path, "ab") as other:  # a server that died in the middle of its line
            other.write(b'{"event_id":"e2","time":"2026-')
        after = log.append(EventRecord.of(sample_event(3)))
    report = verify_log(path)
    assert report.ok and report.segments == 1 and report.events == 2
    assert after.event_id == "e3"


def test_a_foreign_line_appended_by_someone_else_stops_the_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        log.append(EventRecord.of(sample_event(1)))
        with open(path, "ab") as other:
            other.write(b'{"not": "an event"}\n')
        size = path.stat().st_size
        with pytest.raises(AuditWriteError, match="foreign or edited line"):
            log.append(EventRecord.of(sample_event(2)))
        with pytest.raises(AuditWriteError, match="no call runs until it is"):
            log.ready()
    assert path.stat().st_size == size  # nothing linked to a line that is not an event


@pytest.mark.anyio
async def test_two_agent_sessions_serving_one_config_keep_one_verifiable_trail(tree: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cedargate", "--config", str(tree / "cedargate.toml"), "serve"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")},
            "PYTHONPATH": str(ROOT / "server"),
        },
    )

    async def session(calls: int) -> None:
        async with Client(server) as client:
            for _ in range(calls):
                result = await client.call_tool("repo_list_tree", {"repository": "acme/web"})
                assert result.is_error is False, result.content

    with anyio.fail_after(120):
        async with anyio.create_task_group() as sessions:
            sessions.start_soon(session, 25)
            sessions.start_soon(session, 25)
    report = verify_log(tree / "audit.jsonl")
    assert report.ok, report.problem
    assert report.events == 50


def test_a_log_deleted_while_serving_refuses_further_calls(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        log.append(EventRecord.of(sample_event(1)))
        path.unlink()  # its events would go to a file nobody can read any more
        with pytest.raises(AuditWriteError, match="was deleted while the server ran; restart it"):
            log.append(EventRecord.of(sample_event(2)))
        with pytest.raises(AuditWriteError, match="no call runs until it is"):
            log.ready()


def test_a_log_cut_shorter_under_the_server_refuses_further_calls(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        first = log.append(EventRecord.of(sample_event(1)))
        log.append(EventRecord.of(sample_event(2)))
        with open(path, "r+b") as editor:  # event 2 cut out in place (or copytruncate, to zero)
            editor.truncate(len(path.read_bytes().splitlines(keepends=True)[0]))
        with pytest.raises(AuditWriteError, match=r"shorter than the \d+ this server left it"):
            log.ready()
        with pytest.raises(AuditWriteError, match="copytruncate"):
            log.append(EventRecord.of(sample_event(3)))
    assert [e["event_id"] for e in audit_events(path)] == [first.event_id]  # nothing linked over the cut


@pytest.mark.anyio
async def test_a_call_after_the_log_was_truncated_is_refused_and_runs_nothing(runtime: Runtime) -> None:
    path = runtime.config.audit.path
    async with Client(build_server(runtime)) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        path.write_bytes(b"")  # rotated with copytruncate under the running server
        result = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    assert result.is_error and "shorter than the" in str(result.content)
    assert path.read_bytes() == b""
