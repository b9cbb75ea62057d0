"""Hot reload: a changed ``tools/`` or ``policies/`` replaces the snapshot in force, or is refused.

The folders are polled (content digests, so an edit within one mtime tick is still seen). A
new set that loads and validates replaces the old between two calls; one that does not is
refused: the last good set stays in force, and an audit event and a log line say why. Each
attempt is audited once per change on disk, not once per poll.

A change is loaded only once two polls in a row see the same contents, and only if they did
not change while it loaded: a file caught mid-write (an editor writing twice, a checkout under
way) can parse and validate as a set nobody meant, e.g. one cut before its last ``forbid``.

The config file is watched too, but never applied while serving: half a config (new shadow
files, old repositories) would be a set nobody reviewed. An edit is reported once, as a
refused reload saying a restart applies it; until then the config loaded at start-up
decides, and a reload that would enforce a policy file the config on disk shadows is refused.
No error, expected or not, stops the server: the last good set stays in force.
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
from cedargate.catalog import files_under
from cedargate.config import Config, config_file_sha256, load_config
from cedargate.errors import AuditWriteError, CedargateError, ManifestError
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
    """sha256 over the names and contents of every manifest and policy file, and of the tools lock.

    The files are those the load reads (``files_under``: symlinked folders followed, editor
    leftovers skipped), so an editor's lock file neither triggers nor blocks a reload.
    """
    digest = hashlib.sha256()
    for root, suffix in ((config.tools_dir, ".toml"), (config.policies_dir, ".cedar")):
        try:
            paths = files_under(root, suffix, ManifestError) if root.is_dir() else []
        except CedargateError as exc:  # a symlink loop: the load refuses it and says where
            digest.update(str(exc).encode())
            continue
        for path in paths:
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
        self._config_seen = config.source_sha256
        """The config file's contents last reported (at first, those loaded at start-up)."""
        self._disk_shadow: frozenset[str] = frozenset()
        """Shadow files of the config on disk that the config in force does not shadow."""
        self._refused_for_shadow = False
        """The last load was refused for enforcing one of ``_disk_shadow``: a config edit may lift that."""
        self._settling: tuple[str, str | None] | None = None
        """Contents seen changed at the last poll, loaded if the next poll sees them unchanged."""
        self._last_failure: str | None = None
        self._listeners: list[ToolsChanged] = []

    def on_tools_changed(self, listener: ToolsChanged) -> None:
        """Call ``listener`` after a reload that changed the published tool list."""
        self._listeners.append(listener)

    def check(self) -> ReloadResult | None:
        """Reload if the folders changed and then held still for one poll; ``None`` while nothing is due.

        A config file edit that held still is reported (once per change), and never applied.
        """
        state = (tree_digest(self._config), self._config_on_disk())
        if state == (self._digest, self._config_seen):
            self._settling = None
            return None
        if state != self._settling:
            self._settling = state  # still changing, or just changed: look again at the next poll
            return None
        digest, config_digest = state
        result: ReloadResult | None = None
        if config_digest != self._config_seen:
            self._config_seen = config_digest
            result = self._config_changed(config_digest)
        if digest != self._digest or (result is not None and self._refused_for_shadow):
            loaded = self._load(digest)
            if loaded is None:
                return result
            self._digest, result = digest, loaded
        self._settling = None
        return result

    def _config_on_disk(self) -> str | None:
        source = self._config.source
        return None if source is None else config_file_sha256(source)

    def _config_changed(self, digest: str | None) -> ReloadResult | None:
        """Report an edit of the config file: refused (a restart applies it), saying what stays as loaded."""
        current = self._snapshots.current
        source = self._config.source
        if digest == self._config.source_sha256:
            self._disk_shadow = frozenset()
            logger.warning("config file `%s` is again the one loaded at start-up", source)
            return ReloadResult(applied=False, generation=current.generation)
        started = time.perf_counter()
        loaded_shadow = set(self._config.policy.shadow_files)
        notes = []
        try:
            on_disk = load_config(source)
        except CedargateError as exc:
            self._disk_shadow = frozenset()
            notes.append(f"the file on disk does not load, so a restart would fail until it is fixed: {exc}")
        else:
            disk_shadow = set(on_disk.policy.shadow_files)
            self._disk_shadow = frozenset(disk_shadow - loaded_shadow)
            if self._disk_shadow:
                notes.append(
                    f"`[policy] shadow_files` on disk adds {_listed(self._disk_shadow)}, which the config in force "
                    "does not shadow: until a restart, a reload that would enforce one is refused"
                )
            if loaded_shadow - disk_shadow:
                notes.append(
                    f"`[policy] shadow_files` on disk drops {_listed(loaded_shadow - disk_shadow)}: "
                    "they stay shadowed (not enforced) until a restart"
                )
        error = (
            f"config file `{source}` changed on disk and is not applied: cedargate reads its config only at "
            f"start-up, so restart the server to apply it; until then the config loaded at start-up decides "
            f"(generation {current.generation} stays in force)"
        ) + "".join(f"; {note}" for note in notes)
        logger.warning("%s", error)
        self._audit_reload(current, None, started, error, {"config_file": str(source), "config_sha256": digest})
        return ReloadResult(applied=False, generation=current.generation, error=error)

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
        except Exception as exc:  # a bug must not stop the server: refuse the set, as for a bad policy
            logger.exception("policy reload: unexpected error while loading")
            problem = (
                f"unexpected {type(exc).__name__} while loading: {exc} (a cedargate bug; the traceback is in the "
                "server log): fix or revert the last change to the tools or policies, and report it"
            )
        self._refused_for_shadow = False
        if candidate is not None and (shadowed := self._newly_enforced_disk_shadow(current, candidate)):
            candidate, self._refused_for_shadow = None, True
            problem = (
                f"{_listed(shadowed)} would be enforced, but the config file on disk lists "
                f"{'it' if len(shadowed) == 1 else 'them'} in `[policy] shadow_files` and the config in force "
                "(read at start-up) does not: restart the server to load the new config, or take "
                f"{'it' if len(shadowed) == 1 else 'them'} out of `shadow_files` on disk to enforce now"
            )
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

    def _newly_enforced_disk_shadow(self, current: Snapshot, candidate: Snapshot) -> list[str]:
        """Files ``candidate`` would enforce, and ``current`` does not, that the config on disk shadows."""
        if not self._disk_shadow:
            return []
        shadowed = set(self._config.policy.shadow_files)
        root = self._config.policies_dir
        enforced_now = {_name(p, root) for p in current.files} - shadowed
        return sorted(({_name(p, root) for p in candidate.files} - shadowed - enforced_now) & self._disk_shadow)

    async def poll(self) -> ReloadResult | None:
        """One check off the event loop, then the tool-list listeners if the list changed.

        Never raises (but cancellation): a failing poll is logged, once per distinct failure,
        and the next poll tries again with the last good set still in force.
        """
        try:
            result = await anyio.to_thread.run_sync(self.check)
        except Exception as exc:
            if str(exc) != self._last_failure:
                logger.exception("policy reload: the check failed; the set in force stays")
            self._last_failure = str(exc)
            return None
        self._last_failure = None
        if result is not None and result.tools_changed:
            for listener in list(self._listeners):
                try:
                    await listener()
                except Exception:
                    logger.exception("policy reload: telling clients the tool list changed failed")
        return result

    async def watch(self, interval: float) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(interval)
            await self.poll()

    def _audit_reload(
        self,
        previous: Snapshot,
        new: Snapshot | None,
        started: float,
        error: str | None,
        extra: dict[str, object] | None = None,
    ) -> None:
        """One reload event naming, and hashing, each policy file and manifest of the set in force."""
        in_force = new or previous
        root = self._config.policies_dir
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
                "policy_files": [_name(p, root) for p in in_force.files],
                "policy_sha256": {_name(p, root): in_force.policies.sha256.get(p) for p in in_force.files},
                "manifest_sha256": {m.name: m.content_hash for m in in_force.catalog},
                **(extra or {}),
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


def _listed(names: set[str] | frozenset[str] | list[str]) -> str:
    return ", ".join(f"`{name}`" for name in sorted(names))


def _name(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
