"""Reviewed manifests: with ``tools_lock`` configured, a tool is served only as an admin last saw it.

A manifest's content hash (recorded in every audit event) changes with anything an agent
reads or that governs the tool: description, schema, risk, handler, duty, cost. The lock
file records the hash of every manifest an admin reviewed (``cedargate tools lock``). The
server publishes the catalog only when every manifest matches it, so an edited or new
manifest (an unreviewed change, or a "rug pull" of a description) is never served unseen:
at start-up it stops the server, at hot reload the last good set stays in force, as for a
policy that does not validate. A locked tool whose manifest was removed is simply gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel

from cedargate.catalog import ToolCatalog
from cedargate.errors import ManifestError

LISTED_CHANGES: Final = 5
"""How many unreviewed manifests an error names; ``tools lock --check`` lists them all."""

_HEADER = """\
# Reviewed tool manifests, written by `cedargate tools lock`. cedargate serves the tools only
# while every manifest still has the content hash recorded here: review a changed manifest,
# then lock again.
"""


class LockChange(BaseModel):
    """One difference between the manifests on disk and the lock file."""

    tool: str
    change: Literal["added", "changed", "removed"]
    locked: str | None
    """The hash in the lock file (``None`` for a tool it does not name)."""
    current: str | None
    """The manifest's hash now (``None`` for a removed manifest)."""
    file: str | None

    def describe(self) -> str:
        where = f" (`{self.file}`)" if self.file else ""
        if self.change == "added":
            return f"`{self.tool}`{where} is not in the lock"
        if self.change == "removed":
            return f"`{self.tool}` is locked but no manifest declares it any more"
        return f"`{self.tool}`{where} changed since it was locked ({_short(self.locked)} -> {_short(self.current)})"


def read_lock(path: Path) -> dict[str, str]:
    """The locked hashes by tool name; a missing or unreadable file says what to do."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"tools lock `{path}` does not exist: review the manifests, then run `cedargate tools lock` to write it"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(
            f"tools lock `{path}` cannot be read: {exc}; run `cedargate tools lock` to rewrite it"
        ) from exc
    tools = raw.get("tools", {})
    if not isinstance(tools, dict) or not all(isinstance(v, str) for v in tools.values()):
        raise ManifestError(
            f"tools lock `{path}`: `[tools]` must map tool names to hashes; rewrite it with `cedargate tools lock`"
        )
    return dict(tools)


def read_lock_or_empty(path: Path) -> dict[str, str]:
    """The locked hashes, or none when the file is missing or unreadable (nothing is locked then)."""
    try:
        return read_lock(path)
    except ManifestError:
        return {}


def lock_changes(catalog: ToolCatalog, locked: Mapping[str, str]) -> list[LockChange]:
    """What differs between the manifests and the lock, by tool name."""
    found = []
    for manifest in catalog:
        hashed = locked.get(manifest.name)
        if hashed != manifest.content_hash:
            found.append(
                LockChange(
                    tool=manifest.name,
                    change="added" if hashed is None else "changed",
                    locked=hashed,
                    current=manifest.content_hash,
                    file=str(manifest.source),
                )
            )
    for name in sorted(set(locked) - set(catalog.tools)):
        found.append(LockChange(tool=name, change="removed", locked=locked[name], current=None, file=None))
    return found


def enforce_lock(catalog: ToolCatalog, path: Path) -> None:
    """Raise ``ManifestError`` unless every manifest is the one the lock records."""
    unreviewed = [c for c in lock_changes(catalog, read_lock(path)) if c.change != "removed"]
    if unreviewed:
        listed = "; ".join(c.describe() for c in unreviewed[:LISTED_CHANGES])
        if len(unreviewed) > LISTED_CHANGES:
            listed += f"; and {len(unreviewed) - LISTED_CHANGES} more (`cedargate tools lock --check` lists them)"
        raise ManifestError(
            f"tools lock `{path}`: {listed}. Nothing is served until an admin reviews the change and runs "
            "`cedargate tools lock`"
        )


def write_lock(path: Path, catalog: ToolCatalog) -> None:
    """Record every manifest's hash; written to a temporary file and renamed, so readers never see half.

    Fails with ``ManifestError``, leaving no temporary file, when the lock cannot be written.
    """
    if path.is_dir():
        raise ManifestError(f"tools lock `{path}` is a folder: move it aside or set `tools_lock` to a file")
    lines = [_HEADER, "[tools]"]
    lines += [f"{json.dumps(m.name)} = {json.dumps(m.content_hash)}" for m in catalog]
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise ManifestError(f"tools lock `{path}` cannot be written: {exc.strerror or exc}") from exc


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"
