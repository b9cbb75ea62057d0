"""Shared fixtures: a demo tree (two real git repositories and a config) in ``tmp_path``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from cedargate import progress
from cedargate.audit.event import AuditEvent
from cedargate.config import Config, load_config
from cedargate.demo import write_demo_tree
from cedargate.manifest import ToolManifest
from cedargate.reload import ReloadResult
from cedargate.runtime import Runtime, build_runtime, handler_registry

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.store_fixtures", "tests.oauth_fixtures"]


def fast_reloading_server(tree: Path) -> Client:
    """A client of a real ``cedargate serve`` over stdio on ``tree``, looking for changes every 50 ms."""
    config = tree / "cedargate.toml"
    config.write_text(config.read_text() + "\n[policy]\nreload_interval_seconds = 0.05\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cedargate", "--config", str(config), "serve"], env=env
    )
    return Client(params, mode="legacy")


def shipped_config() -> Config:
    """The checkout's own cedargate.toml: the tools, policies and duties as shipped."""
    return load_config(ROOT / "cedargate.toml", environ={})


def shipped_check() -> Callable[[ToolManifest], None]:
    """Manifest checks as the server runs them against the shipped config."""
    return handler_registry(None, shipped_config()).check


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def heartbeat_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads ``cedargate.progress`` starts while the test runs."""
    started: list[str] = []

    class Recorded(threading.Thread):
        def start(self) -> None:
            started.append(self.name)
            super().start()

    monkeypatch.setattr(progress.threading, "Thread", Recorded)
    return started


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A demo tree whose tools and policies are private copies the test may edit."""
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    config = write_demo_tree(tmp_path)
    text = config.read_text()
    text = text.replace(json.dumps(str(ROOT / "tools")), '"tools"').replace(
        json.dumps(str(ROOT / "policies")), '"policies"'
    )
    config.write_text(text)
    return tmp_path


@pytest.fixture
def config(tree: Path) -> Config:
    return load_config(tree / "cedargate.toml", environ={})


@pytest.fixture
def runtime(config: Config) -> Iterator[Runtime]:
    rt = build_runtime(config)
    yield rt
    rt.close()


def sample_event(n: int, **fields: Any) -> AuditEvent:
    """Event ``e{n}`` of a made-up read, for tests of the audit log itself; ``fields`` override."""
    base: dict[str, Any] = {
        "event_id": f"e{n}",
        "time": "2026-11-26T00:00:00+00:00",
        "principal": {"agent": "a", "team": "t", "on_behalf_of": "u", "mode": "autonomous"},
        "session_id": "s",
        "task": "k",
        "tool": "repo_read_file",
        "arguments": {"path": f"f{n}"},
        "outcome": "succeeded",
        "duration_ms": 0.5,
    }
    return AuditEvent.model_validate({**base, **fields})


def audit_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def settled_reload(runtime: Runtime) -> ReloadResult | None:
    """Two polls after an edit: the first sees the change, the second finds it settled and loads it."""
    first = await runtime.reloader.poll()
    assert first is None, "a change was loaded on the poll that first saw it"
    return await runtime.reloader.poll()
