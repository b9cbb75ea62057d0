"""Hot reload: a changed ``tools/`` or ``policies/`` replaces the snapshot in force, or is refused.

The folders are polled (content digests, so an edit within one mtime tick is still seen). A
new set that loads and validates replaces the old between two calls; one that does not is
refused: the last good set stays in force, and an audit event and a log line say why. Each
attempt is audited once per change on disk, not once per poll.

A change is loaded only once two polls in a row see the same contents, and only if they did
not change while it loaded: a file caught mid-write (an editor writing twice, a checkout under
way) can parse and validate as a set nobody meant, e.g. one cut before its last ``forbid``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread
from pydantic import BaseModel

from cedargate.audit.event import AuditEvent, AuditPrincipal, Outcome
from cedargate.audit.event_id import new_event_id
from cedargate.audit.log import AuditSink
from cedargate.audit.record import EventRecord
from cedargate.config import Config
from cedargate.errors import AuditWriteError, CedargateError
from cedargate.handlers import HandlerRegistry
from cedargate.snapshot import Snapshot, SnapshotHolder, build_snapshot

logger = logging.getLogger(__name__)

RELOAD_EVENT_TOOL: Final = "cedargate.policy_reload"
"""The ``tool`` of reload audit events; the dot keeps it apart from every manifest name."""
SERVER_PRINCIPAL: Final = AuditPrincipal(
    agent="cedargate", team="cedargate", on_behalf_of="cedargate", mode="autonomous"
)

ToolsChanged = Callable[[], Awaitable[None]]


class ReloadResult(BaseModel):
    """One reload attempt: whether it took effect, the generation in force after it, and why not."""

    applied: bool
    generation: int
    tools_changed: bool = False
    error: str | None = None


def tree_digest(config: Config) -> str:
    """sha256 over the names and contents of every manifest and policy file, and of the tools lock."""
    digest = hashlib.sha256()
    for root, pattern in ((config.tools_dir, "*.toml"), (config.policies_dir, "*.cedar")):
        for path in sorted(root.rglob(pattern)) if root.is_dir() else []:
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            _add_content(digest, path)
    if config.tools_lock is not None:  # locking a reviewed change publishes it
        digest.update(b"lock\0")
        _add_content(digest, config.tools_lock)
    return digest.hexdigest()


def _add_content(digest: hashlib._Hash, path: Path) -> None:
    try:
        digest.update(path.read_bytes())
    except OSError as exc:  # a file removed mid-walk is a change; the next poll sees the rest
        digest.update(str(exc).encode())


class PolicyReloader:
    """Watches the tool and policy folders and swaps the snapshot when they change."""

    def __init__(self, config: Config, registry: HandlerRegistry, snapshots: SnapshotHolder, audit: AuditSink) -> None:
        self._config = config
        self._registry = registry
        self._snapshots = snapshots
        self._audit = audit
        self._digest = tree_digest(config)
        """The contents last loaded (or refused)."""
        self._settling: str | None = None
        """Contents seen changed at the last poll, loaded if the next poll sees them unchanged."""
        self._listeners: list[ToolsChanged] = []

    def on_tools_changed(self, listener: ToolsChanged) -> None:
        """Call ``listener`` after a reload that changed the published tool list."""
        self._listeners.append(listener)

    def check(self) -> ReloadResult | None:
        """Reload if the folders changed and then held still for one poll; ``None`` while nothing is due."""
        digest = tree_digest(self._config)
        if digest == self._digest:
            self._settling = None
            return None
        if digest != self._settling:
            self._settling = digest  # still changing, or just changed: look again at the next poll
            return None
        result = self._load(digest)
        if result is not None:
            self._digest, self._settling = digest, None
        return result

    def _load(self, expected: str) -> ReloadResult | None:
        """Load the folders; swap on success, keep the last good snapshot on failure.

        ``None``, and nothing done, when the contents changed from ``expected`` while loading:
        what was read may be half of an edit.
        """
        started = time.perf_counter()
        current = self._snapshots.current
        candidate: Snapshot | None = None
        try:
            candidate = build_snapshot(self._config, self._registry, current.generation + 1)
        except CedargateError as exc:
            problem = str(exc)
        if tree_digest(self._config) != expected:
            self._settling = None
            return None
        if candidate is None:
            error = f"policy reload refused, generation {current.generation} stays in force: {problem}"
            logger.error("%s", error)
            self._audit_reload(current, None, started, error)
            return ReloadResult(applied=False, generation=current.generation, error=error)
        self._snapshots.swap(candidate)
        changed = _tool_list(current) != _tool_list(candidate)
        logger.info(
            "policy reload: generation %d in force (%d tools, %d policies)",
            candidate.generation,
            len(candidate.catalog),
            len(candidate.policies.info),
        )
        self._audit_reload(current, candidate, started, None)
        return ReloadResult(applied=True, generation=candidate.generation, tools_changed=changed)

    async def poll(self) -> ReloadResult | None:
        """One check off the event loop, then the tool-list listeners if the list changed."""
        result = await anyio.to_thread.run_sync(self.check)
        if result is not None and result.tools_changed:
            for listener in list(self._listeners):
                await listener()
        return result

    async def watch(self, interval: float) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(interval)
            await self.poll()

    def _audit_reload(self, previous: Snapshot, new: Snapshot | None, started: float, error: str | None) -> None:
        in_force = new or previous
        event = AuditEvent(
            event_id=new_event_id(),
            time=datetime.now(UTC).isoformat(timespec="microseconds"),
            principal=SERVER_PRINCIPAL,
            session_id="server",
            task="policy-reload",
            tool=RELOAD_EVENT_TOOL,
            arguments={
                "previous_generation": previous.generation,
                "generation": in_force.generation,
                "tools": sorted(in_force.catalog.tools),
                "policy_files": [_name(p, self._config.policies_dir) for p in in_force.files],
            },
            outcome=Outcome.SUCCEEDED if error is None else Outcome.FAILED,
            error=error,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        try:
            self._audit.append(EventRecord.of(event))
        except AuditWriteError:
            logger.exception("policy reload could not be audited")


def _tool_list(snapshot: Snapshot) -> list[dict[str, object]]:
    return [tool.model_dump(mode="json") for tool in snapshot.catalog.mcp_tools]


def _name(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
