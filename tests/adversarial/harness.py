"""A governed runtime whose handlers and audit sink are watched, for the adversarial suite.

``SpyFamily`` wraps a real handler family and records every handler run with its event id,
so a test can prove that no handler ran without an allow decision and an audit event.
``RecordingAudit`` wraps the real JSONL log and keeps the events it wrote, in order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from hypothesis import HealthCheck, settings
from tests.conftest import ROOT

from cedargate.audit.event import AuditEvent, WrittenEvent
from cedargate.audit.log import AuditSink
from cedargate.audit.record import EventRecord
from cedargate.audit.segments import is_segment_record, parse_complete
from cedargate.config import load_config
from cedargate.demo import write_demo_tree
from cedargate.handlers import Handler, HandlerCall, HandlerFamily, HandlerRegistry
from cedargate.identity import Principal
from cedargate.manifest import ToolManifest
from cedargate.pipeline import CallRequest, CallResult
from cedargate.runtime import Runtime, build_runtime
from cedargate.session import SessionState

EXAMPLES = int(os.environ.get("CEDARGATE_FUZZ_EXAMPLES", "40"))
"""Examples per property; CI keeps the default, ``scripts/soak.py`` raises it."""

settings.register_profile(
    "adversarial",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("adversarial")


def make_tree(workdir: Path) -> Path:
    """The demo tree (two real git repositories, config, tools, policies) in ``workdir``."""
    shutil.copytree(ROOT / "tools", workdir / "tools")
    shutil.copytree(ROOT / "policies", workdir / "policies")
    config = write_demo_tree(workdir)
    text = config.read_text()
    text = text.replace(json.dumps(str(ROOT / "tools")), '"tools"').replace(
        json.dumps(str(ROOT / "policies")), '"policies"'
    )
    config.write_text(text)
    return config


@dataclass
class HandlerRun:
    tool: str
    event_id: str
    args: Mapping[str, Any]
    call: HandlerCall
    """Everything the handler was given."""


class SpyFamily(HandlerFamily):
    """A real family whose handlers are recorded before they run; ``replace`` swaps in a fake."""

    def __init__(self, inner: HandlerFamily, runs: list[HandlerRun], replace: Handler | None = None) -> None:
        self.kind = inner.kind
        self._inner = inner
        self._runs = runs
        self._replace = replace
        self._lock = threading.Lock()

    def check(self, manifest: ToolManifest) -> None:
        self._inner.check(manifest)

    def handler_for(self, manifest: ToolManifest) -> Handler:
        real = self._replace or self._inner.handler_for(manifest)

        def spy(call: HandlerCall) -> dict[str, Any]:
            with self._lock:
                self._runs.append(HandlerRun(manifest.name, call.event_id, dict(call.args), call))
            return real(call)

        return spy


class RecordingAudit:
    """The real audit log, with the events it wrote kept in memory for the test to compare."""

    def __init__(self, log: AuditSink) -> None:
        self.log = log
        self.events: list[AuditEvent] = []

    def ready(self) -> None:
        self.log.ready()

    def append(self, record: EventRecord) -> WrittenEvent:
        written = self.log.append(record)
        self.events.append(written.event)
        return written


@dataclass
class Governed:
    """A runtime with spied handlers and a recording audit sink."""

    runtime: Runtime
    runs: list[HandlerRun] = field(default_factory=list)
    audit: RecordingAudit | None = None

    @property
    def events(self) -> list[AuditEvent]:
        assert self.audit is not None
        return self.audit.events

    def call(self, tool: str, arguments: Mapping[str, Any] | None, session: SessionState | None = None) -> CallResult:
        return anyio.run(self.runtime.pipeline.call, self._request(tool, arguments, session))

    async def acall(
        self, tool: str, arguments: Mapping[str, Any] | None, session: SessionState | None = None
    ) -> CallResult:
        return await self.runtime.pipeline.call(self._request(tool, arguments, session))

    def _request(self, tool: str, arguments: Mapping[str, Any] | None, session: SessionState | None) -> CallRequest:
        # The stdio principal from the config; a runtime with `[auth]` has none (HTTP names it per request).
        principal = self.runtime.principal
        if principal is None:
            raise RuntimeError("this runtime takes its principal from bearer tokens; call it over HTTP")
        return CallRequest(tool, arguments, principal, session or SessionState())

    def close(self) -> None:
        self.runtime.close()


def governed(
    config_path: Path,
    *,
    replace: Mapping[str, Handler] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Governed:
    """Build the real runtime from ``config_path`` and re-wire its pipeline through spies."""
    return spy_on(build_runtime(load_config(config_path, environ=environ or {})), replace=replace)


def spy_on(runtime: Runtime, *, replace: Mapping[str, Handler] | None = None) -> Governed:
    """Re-wire a built runtime's pipeline through spies (servers look the pipeline up on every call)."""
    runs: list[HandlerRun] = []
    # Every family the runtime registered, so new packs are spied on too.
    real = runtime.pipeline.handlers.families
    families = {kind: SpyFamily(family, runs, (replace or {}).get(kind)) for kind, family in real.items()}
    audit = RecordingAudit(runtime.audit)
    runtime.pipeline = runtime.pipeline.rewired(handlers=HandlerRegistry(families), audit=audit)
    return Governed(runtime, runs, audit)


def principal(**changes: str) -> Principal:
    base = {"agent": "codex-demo", "team": "storefront", "on_behalf_of": "alice", "mode": "interactive", "task": "t"}
    return Principal.model_validate({**base, **changes})


def chained_records(path: Path) -> list[dict[str, Any]]:
    """The complete events of a log, segment records and torn lines left out."""
    out = []
    for raw in path.read_bytes().splitlines():
        record = parse_complete(raw)
        if record is not None and not is_segment_record(record):
            out.append(record)
    return out


def assert_call_governed(g: Governed, before_events: int, before_runs: int, result: CallResult) -> None:
    """The invariants every call keeps: one audit event, handler only after an allow, a clear error."""
    new_events = g.events[before_events:]
    new_runs = g.runs[before_runs:]
    assert len(new_events) == 1, f"expected one audit event, got {len(new_events)}"
    event = new_events[0]
    assert result.event is not None and result.event.event_id == event.event_id
    assert event.outcome == result.outcome
    assert len(new_runs) <= 1
    if new_runs:
        # A handler ran: only after an allow decision, and the event that records it is this one.
        assert new_runs[0].event_id == event.event_id
        assert event.decision is not None and event.decision.allowed
    if event.decision is None or not event.decision.allowed:
        assert not new_runs, "a handler ran without an allow decision"
    if result.is_error:
        assert result.payload is None
        assert result.message and event.event_id in result.message
        assert "Traceback" not in result.message
    else:
        assert new_runs and result.payload is not None


Check = Callable[[Governed, int, int, CallResult], None]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEDARGATE_", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT / "server")
    env.update(extra or {})
    return env


@dataclass
class ServerProcess:
    """A real ``cedargate serve --transport http`` process on a free loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no handler, no flush, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


async def start_http_server(config_path: Path, log: Path, env: Mapping[str, str] | None = None) -> ServerProcess:
    """Start the server and wait (bounded) until it accepts connections."""
    port = free_port()
    command = [sys.executable, "-m", "cedargate", "--config", str(config_path), "serve"]
    with open(log, "ab") as stderr:
        process = subprocess.Popen(
            [*command, "--transport", "http", "--port", str(port)], env=server_env(env), stderr=stderr
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}/mcp", log)
    try:
        with anyio.fail_after(60):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log.read_text()}")
                try:
                    async with httpx.AsyncClient() as http:
                        await http.get(f"http://127.0.0.1:{port}/")
                    return server
                except httpx.TransportError:
                    await anyio.sleep(0.05)
    except BaseException:
        server.stop()
        raise
