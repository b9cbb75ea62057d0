"""Loading every manifest under ``tools/`` into the catalog the server publishes.

The catalog is exactly the manifests: a tool exists if and only if a manifest declares it.
Any broken manifest, or one name declared twice, stops start-up.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import mcp_types as types
from pydantic import ValidationError

from cedargate.errors import ManifestError, describe_validation_error
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


def load_catalog(tools_dir: Path, check: ManifestCheck | None = None) -> ToolCatalog:
    """Load ``tools_dir/**/*.toml``; each file holds one tool, or a pack under ``[[tool]]``."""
    if not tools_dir.is_dir():
        raise ManifestError(f"tools folder `{tools_dir}` does not exist: set `tools_dir` in the config")
    tools: dict[str, ToolManifest] = {}
    for path in sorted(tools_dir.rglob("*.toml")):
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
