"""A server stops on SIGINT or SIGTERM (over stdio with its client's pipe still open) and closes its runtime."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from mcp import Client
from tests.conftest import audit_events
from tests.raw_wire import HANDSHAKE, RawWire, handshaken_server, reap, serve_process, tool_call
from tests.repo_support import WEB_ANCHOR

from cedargate.audit.verify import verify_log
from cedargate.stdio_input import WireInput


@pytest.fixture
def wire(tree: Path) -> Iterator[RawWire]:
    with handshaken_server(tree) as client:
        yield client


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_server_whose_client_keeps_stdin_open(
    wire: RawWire, tree: Path, signal_number: signal.Signals
) -> None:
    wire.send(tool_call(2, "repo_list_tree", {"repository": "acme/web"}))
    assert wire.answer(2)["result"]["isError"] is False

    status, stderr = wire.stopped(signal_number)

    assert status == 0, stderr
    assert f"{signal_number.name} received; stopping" in stderr
    assert "Traceback" not in stderr
    assert [event["tool"] for event in audit_events(tree / "audit.jsonl")] == ["repo_list_tree"]


def test_a_tool_running_when_the_server_is_stopped_runs_to_its_end_and_is_audited(tree: Path) -> None:
    config = tree / "cedargate.toml"
    tests = 'test_command = "sh ./ci.sh"\ntest_timeout_seconds = 20\ntest_memory_mb = 256\n'
    config.write_text(config.read_text().replace(WEB_ANCHOR, WEB_ANCHOR + tests, 1))
    process = serve_process(tree, subprocess.PIPE)
    try:
        wire = RawWire(process)
        for message in HANDSHAKE:
            wire.send(message)
        wire.answer(1)
        branch = {"repository": "acme/web", "branch": "agent/stopping"}
        script = "touch started\nsleep 2\ntouch finished\n"
        wire.send(tool_call(2, "repo_create_branch", branch))
        assert wire.answer(2)["result"]["isError"] is False
        wire.send(tool_call(3, "repo_write_file", {**branch, "path": "ci.sh", "content": script}))
        assert wire.answer(3)["result"]["isError"] is False
        wire.send(tool_call(4, "repo_run_tests", {"repository": "acme/web"}))
        started = _appears(tree / "var/workspaces/acme/web", "started")

        status, stderr = wire.stopped(signal.SIGTERM)
    finally:
        reap(process)

    assert status == 0, stderr
    assert (started.parent / "finished").exists()  # the run was waited for, not cut off half-way
    last = audit_events(tree / "audit.jsonl")[-1]
    assert last["tool"] == "repo_run_tests" and last["outcome"] == "failed"  # its result never reached the client
    assert "cancelled (by the client or a stopping server) while its tool ran; the tool ran to its end" in last["error"]
    assert last["execution"]["test_run"]["exit_code"] == 0 and last["duration_ms"] >= 2000
    assert verify_log(tree / "audit.jsonl").ok


def test_requests_from_a_file_on_stdin_are_read_and_its_end_stops_the_server(tree: Path) -> None:
    """stdin may be a regular file, which cannot be polled: its lines are still read, and its end is EOF.

    EOF is the client's shutdown: a call still in flight then is cancelled, and audited as such.
    """
    requests = tree / "requests.jsonl"
    lines = [*HANDSHAKE, tool_call(2, "repo_read_file", {"repository": "acme/web", "path": "README.md"})]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with requests.open("rb") as stdin:
        process = serve_process(tree, stdin)
        stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr.decode()
    answers = {message["id"]: message for message in map(json.loads, stdout.splitlines())}
    assert answers[1]["result"]["serverInfo"]["name"] == "cedargate"
    [event] = audit_events(tree / "audit.jsonl")
    assert event["tool"] == "repo_read_file" and event["arguments"] == lines[2]["params"]["arguments"]


def test_sigterm_stops_an_http_server_and_its_secondary_sink_keeps_every_event(tree: Path) -> None:
    config = tree / "cedargate.toml"
    config.write_text(config.read_text() + '\n[[audit.sinks]]\nkind = "database"\n')
    process = serve_process(tree, subprocess.DEVNULL, "--transport", "http", "--port", "0")
    try:
        assert process.stderr is not None
        serving = process.stderr.readline().decode()
        url = re.search(r"http://\S+/mcp", serving)
        assert url is not None, serving

        async def calls() -> None:
            async with Client(url.group()) as client:
                for _ in range(3):
                    result = await client.call_tool("repo_list_tree", {"repository": "acme/web"})
                    assert result.is_error is False

        anyio.run(calls)
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
        stderr = process.stderr.read().decode()
    finally:
        reap(process)

    assert status == 0, stderr  # uvicorn alone ends the process by the signal, before the runtime closes
    assert "SIGTERM received; stopping" in stderr
    with closing(sqlite3.connect(tree / "var/cedargate.db")) as store:
        [(stored,)] = store.execute("select count(*) from audit_events").fetchall()
    assert stored == len(audit_events(tree / "audit.jsonl")) == 3


def _appears(root: Path, name: str) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = next(root.rglob(name), None) if root.exists() else None
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no `{name}` under {root} within 30 s")


@pytest.mark.anyio
async def test_the_wire_input_yields_whole_lines_across_reads() -> None:
    """A line longer than one read, a character split between reads, and a last line without its newline."""
    long_line = json.dumps({"content": "é" * 100_000}) + "\n"
    read_end, write_end = os.pipe()
    wire = WireInput(read_end)

    def write() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            data = (long_line + '{"last": true}').encode()
            for start in range(0, len(data), 4095):  # odd-sized pieces split the two-byte characters
                pipe.write(data[start : start + 4095])
                pipe.flush()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, write)
            lines = [line async for line in wire]
    finally:
        os.close(read_end)

    assert lines == [long_line, '{"last": true}']
