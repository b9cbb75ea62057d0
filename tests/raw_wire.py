"""A raw JSON-RPC client on a real `cedargate serve` process's pipes, for what the SDK's client never sends."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tests.conftest import ROOT

HANDSHAKE = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]


def tool_call(request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


def serve_process(tree: Path, stdin: int | IO[bytes], *options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cedargate", "--config", str(tree / "cedargate.toml"), "serve", *options],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")},
            "PYTHONPATH": str(ROOT / "server"),
        },
    )


ANSWER_WITHIN_S = 60.0


class RawWire:
    """A raw JSON-RPC client on the server's pipes (the test must hold stdin open and know the pid)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout.fileno()
        self._pending = b""

    def send(self, message: dict[str, Any]) -> None:
        self.send_line(json.dumps(message))

    def send_line(self, line: str) -> None:
        self._stdin.write(line.encode() + b"\n")
        self._stdin.flush()

    def answer(self, request_id: int | None) -> dict[str, Any]:
        """The next message answering ``request_id`` (``None``: an error for a request whose id is unknown)."""
        while True:
            message: dict[str, Any] = json.loads(self._line())
            if "id" in message and message["id"] == request_id:
                return message

    def _line(self) -> bytes:
        """The next line of stdout; a server that says nothing for ``ANSWER_WITHIN_S`` fails the test."""
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self._stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"the server sent no line within {ANSWER_WITHIN_S} s"
            chunk = os.read(self._stdout, 1 << 16)
            assert chunk, "the server closed stdout before answering"
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def stopped(self, signal_number: int) -> tuple[int, str]:
        """Signal the server and wait for it to exit, its stdin still open; returns status and stderr."""
        self.process.send_signal(signal_number)
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("the server was still running 30 s after the signal") from None
        assert not self._stdin.closed
        assert self.process.stderr is not None
        return status, self.process.stderr.read().decode()


@contextmanager
def handshaken_server(tree: Path) -> Iterator[RawWire]:
    """`cedargate serve` over stdio on ``tree``'s config, past the handshake; killed at the end."""
    process = serve_process(tree, subprocess.PIPE)
    try:
        client = RawWire(process)
        for message in HANDSHAKE:
            client.send(message)
        assert client.answer(1)["result"]["serverInfo"]["name"] == "cedargate"
        yield client
    finally:
        reap(process)


def reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    with process:  # closes its pipes
        process.wait()
