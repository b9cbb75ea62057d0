"""Loading every manifest under ``tools/`` into the catalog the server publishes.

The catalog is exactly the manifests: a tool exists if and only if a manifest declares it.
Any broken manifest, or one name declared twice, stops start-up.

``files_under`` is the one walk of the watched folders (manifests, policies, the reload
digest), so what is loaded, validated and watched is always the same set of files.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import mcp_types as types
from pydantic import ValidationError

from cedargate.errors import CedargateError, ManifestError, describe_validation_error
from cedargate.manifest import ToolManifest
from cedargate.text_file import read_text_file

ManifestCheck = Callable[[ToolManifest], None]
"""Extra checks a handler family runs on its manifests; raises ``ValueError`` naming the field."""


@dataclass(frozen=True)
class ToolCatalog:
    """The published tools, by name, in a stable order."""

    tools: Mapping[str, ToolManifest]

    def __iter__(self) -> Iterator[ToolManifest]:
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    def get(self, name: str) -> ToolManifest | None:
        return self.tools.get(name)

    @cached_property
    def mcp_tools(self) -> list[types.Tool]:
        return [m.to_mcp_tool() for m in self]


EDITOR_LEFTOVER_PREFIXES: Final = (".#", "._")
"""Emacs's lock file (``.#dev.cedar``, a dangling symlink while a buffer has unsaved edits), and
macOS's AppleDouble metadata (``._dev.cedar``, the resource fork a tarball or copy made on a Mac
carries beside each file): neither is a policy or a manifest."""
EDITOR_LEFTOVER_SUFFIXES: Final = ("~", ".swp", ".swo", ".swx")
"""Backups (``dev.cedar~``) and vim's swap files (``.dev.cedar.swp``)."""


def is_editor_leftover(name: str) -> bool:
    """Whether ``name`` is an editor's lock, backup or swap file, or macOS metadata: the only files a walk skips.

    Kept to these well-known names: any other file skipped would be a policy silently not
    enforced. Of them, only a lock file or an AppleDouble file can end in ``.cedar`` or
    ``.toml``; the rest are listed so that the rule reads whole.
    """
    return name.startswith(EDITOR_LEFTOVER_PREFIXES) or name.endswith(EDITOR_LEFTOVER_SUFFIXES)


def files_under(root: Path, suffix: str, error: type[CedargateError]) -> list[Path]:
    """Every ``*suffix`` file under ``root``, in path order, following symlinked folders.

    Paths stay under ``root`` as written (``policies/shared/x.cedar``, never the link's
    target), so each poll follows a link as it is now. Editor leftovers (``is_editor_leftover``)
    are skipped. A hidden file, or one in a hidden folder, that is the same file (same
    ``os.path.realpath``) as one found under a visible path is skipped too: it is published
    through that name, as in a Kubernetes ConfigMap volume (``x.cedar -> ..data/x.cedar``,
    ``..data -> ..2026_11_27_03_50_00.1/``). Any other hidden file raises ``error`` naming it
    (the first in path order): loading it would surprise whoever hid it, and skipping it would
    drop a policy (or a tool) without a word. A symlinked folder that leads back to one of its
    own parents would be walked forever: ``error`` is raised naming it.
    """
    found: list[Path] = []
    hidden: list[tuple[Path, str | None]] = []

    def unreadable(exc: OSError) -> None:  # a folder skipped unread would drop its files silently
        raise error(f"{exc.filename}: cannot be read: {exc.strerror or exc}") from exc

    for top, folders, names in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(top)
        parents = _real_parents(here, root)
        for folder in folders:
            path = here / folder
            if os.path.realpath(path) in parents:
                raise error(
                    f"{path}: leads back to `{os.path.realpath(path)}`, a folder that contains it, through a "
                    "symlinked folder, so the walk would never end; remove the symlink on that path or point "
                    "it at a folder outside this tree"
                )
        folders.sort()
        hidden_folder = next((part for part in here.relative_to(root).parts if part.startswith(".")), None)
        for name in sorted(names):
            if not name.endswith(suffix) or is_editor_leftover(name):
                continue
            if hidden_folder is not None or name.startswith("."):
                hidden.append((here / name, hidden_folder))
            else:
                found.append(here / name)
    if hidden:
        published = {os.path.realpath(path) for path in found}
        for path, hidden_folder in sorted(hidden):
            if os.path.realpath(path) not in published:
                _refuse_hidden(path, root, hidden_folder, error)
    return sorted(found)


def _refuse_hidden(path: Path, root: Path, hidden_folder: str | None, error: type[CedargateError]) -> None:
    """Refuse a hidden file (or one in a hidden folder), saying how to load it or keep it out."""
    if hidden_folder is None:
        where, fix = "is hidden (its name starts with `.`)", "rename it without the leading `.`"
    else:
        where, fix = f"is in the hidden folder `{hidden_folder}`", "rename that folder without the leading `.`"
    raise error(
        f"{path}: {where}, and no file under a visible path of `{root}` is the same file (a symlink to it); a "
        f"hidden file is neither loaded nor skipped, so that nothing meant to be enforced is dropped without a "
        f"word: {fix} (or link to it from a visible name) to load it, or move it out of `{root}`"
    )


def _real_parents(folder: Path, root: Path) -> set[str]:
    """The real paths of ``folder`` and each of its parents up to ``root``."""
    parents = {os.path.realpath(folder)}
    while folder != root and folder.parent != folder:
        folder = folder.parent
        parents.add(os.path.realpath(folder))
    return parents


def load_catalog(tools_dir: Path, check: ManifestCheck | None = None) -> ToolCatalog:
    """Load ``tools_dir/**/*.toml`` (see ``files_under``); each file holds one tool, or a pack under ``[[tool]]``."""
    if not tools_dir.is_dir():
        raise ManifestError(f"tools folder `{tools_dir}` does not exist: set `tools_dir` in the config")
    tools: dict[str, ToolManifest] = {}
    for path in files_under(tools_dir, ".toml", ManifestError):
        for manifest in _load_file(path, check):
            if manifest.name in tools:
                first = tools[manifest.name].source
                raise ManifestError(
                    f"{path}: tool `{manifest.name}` is already declared in `{first}`; "
                    "a tool name may be published once only"
                )
            tools[manifest.name] = manifest
    if not tools:
        raise ManifestError(f"tools folder `{tools_dir}` holds no manifests (*.toml)")
    return ToolCatalog(tools=dict(sorted(tools.items())))


def _load_file(path: Path, check: ManifestCheck | None) -> list[ToolManifest]:
    try:
        raw = tomllib.loads(read_text_file(path, ManifestError))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from exc
    entries = raw["tool"] if isinstance(raw.get("tool"), list) else [raw]
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ManifestError(f"{path}: entry {number} of `tool` is not a table; write each tool as [[tool]]")
    return [_load_entry(path, entry, check) for entry in entries]


def _load_entry(path: Path, entry: dict[str, Any], check: ManifestCheck | None) -> ToolManifest:
    tool = entry.get("name", "?")
    try:
        manifest = ToolManifest.model_validate({**entry, "source": path})
    except ValidationError as exc:
        raise ManifestError(f"{path}: tool `{tool}`: {describe_validation_error(exc)}") from exc
    if check is not None:
        try:
            check(manifest)
        except ValueError as exc:
            raise ManifestError(f"{path}: tool `{tool}`: {exc}") from exc
    return manifest
