"""What a repository call changes: its paths and the path classes they fall in (``context.changes``).

Cedar cannot match a pattern against each member of a set, so a policy cannot ask "does any
changed path lie under ``.github/workflows/``" by itself. The config names path classes instead
(``[path_classes]``, gitignore patterns) and a policy asks
``context.changes.classes.contains("ci")``. A manifest's ``[paths]`` table says which argument
holds the paths; a diff's paths are read from its headers here, and ``repo_apply_diff`` refuses
a diff that git reads as changing any path this reading missed (fail closed).
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cedargate.cedar_types import REPOSITORY
from cedargate.config import Config, RepositoryConfig
from cedargate.manifest import ToolManifest
from cedargate.path_classes import ClassPatterns, classify
from cedargate.repo_paths import confined_path
from cedargate.resolve import Resource


@dataclass(frozen=True)
class Changes:
    """The paths a call changes and the classes among them; empty for a call that changes no file."""

    paths: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()

    def for_policy(self) -> dict[str, list[str]]:
        """As ``context.changes`` holds it (sorted, so a decision never depends on set order)."""
        return {"paths": sorted(self.paths), "classes": sorted(self.classes)}


NO_CHANGES: Final = Changes()


def call_changes(manifest: ToolManifest, args: Mapping[str, Any], resource: Resource, config: Config) -> Changes:
    """The paths the call changes, as its manifest's ``[paths]`` table says where to read them."""
    binding = manifest.paths
    if binding is None or resource.ref.type != REPOSITORY or binding.argument not in args:
        return NO_CHANGES
    value = str(args[binding.argument])
    paths = frozenset({confined_path(value, binding.argument)}) if binding.format == "path" else diff_paths(value)
    repo = resource.config
    assert isinstance(repo, RepositoryConfig)
    return Changes(paths, classify(paths, path_classes_of(config, repo)))


def path_classes_of(config: Config, repo: RepositoryConfig) -> ClassPatterns:
    """The repository's path classes: the config's ``[path_classes]`` with the repository's own added.

    A class named in both keeps the patterns of both: a repository can widen a class the
    platform defines but never narrow it.
    """
    merged: dict[str, tuple[str, ...]] = dict(config.path_classes)
    for name, patterns in repo.path_classes.items():
        merged[name] = merged.get(name, ()) + patterns
    return tuple(sorted(merged.items()))


def diff_paths(patch: str) -> frozenset[str]:
    """Every path a unified diff names in its headers, old and new names alike.

    Read generously: a ``---`` line followed by ``+++`` counts wherever it stands, so a path is
    at worst reported that git would not change (the policy sees more, never less). ``/dev/null``
    is no path; ``a/`` and ``b/`` style prefixes are stripped as ``git apply -p1`` does.
    """
    lines = patch.split("\n")  # as git splits: a form feed or U+2028 inside a name ends no line
    paths: set[str] = set()
    for number, line in enumerate(lines):
        if line.startswith("diff --git "):
            paths.update(_git_header_names(line.removeprefix("diff --git ")))
        elif line.startswith(_NAMED_HEADERS):
            paths.add(unquoted_name(line.split(" ", 2)[2]))
        elif line.startswith("--- ") and number + 1 < len(lines) and lines[number + 1].startswith("+++ "):
            for header in (line, lines[number + 1]):
                name = _patch_name(header[4:])
                if name is not None:
                    paths.add(name)
    return frozenset(path for path in paths if path)


_NAMED_HEADERS: Final = ("rename from ", "rename to ", "copy from ", "copy to ")


def _patch_name(text: str) -> str | None:
    """The path on a ``---``/``+++`` line: quoted, or up to a tab (git adds one after a name with spaces)."""
    name = unquoted_name(text) if text.startswith('"') else text.split("\t", 1)[0].rstrip("\r")
    if name == "/dev/null":
        return None
    return _strip_prefix(name)


def _git_header_names(rest: str) -> list[str]:
    """The two names of a ``diff --git a/OLD b/NEW`` line (read when a diff has no ``---`` lines)."""
    if rest.startswith('"'):
        first, _, second = _split_quoted(rest)
        return [_strip_prefix(first), _strip_prefix(unquoted_name(second) if second.startswith('"') else second)]
    # Unquoted: the same name twice unless it is a rename, whose `rename from/to` lines name both.
    half = (len(rest) - 1) // 2
    if len(rest) % 2 == 1 and rest[half] == " " and _strip_prefix(rest[:half]) == _strip_prefix(rest[half + 1 :]):
        return [_strip_prefix(rest[:half])]
    old, _, new = rest.partition(" b/")
    return [_strip_prefix(old), new]


def _split_quoted(text: str) -> tuple[str, str, str]:
    """Split a C-quoted name off the front of ``text``: (name, separator, rest)."""
    index = 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == '"':
            return unquoted_name(text[: index + 1]), " ", text[index + 1 :].lstrip(" ")
        index += 1
    return unquoted_name(text), "", ""


def _strip_prefix(name: str) -> str:
    """``git apply -p1``: drop everything up to the first slash."""
    _, slash, rest = name.partition("/")
    return rest if slash else name


def unquoted_name(name: str) -> str:
    """A path as git writes it in a header: C-quoted when it holds unusual bytes."""
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        return codecs.escape_decode(name[1:-1].encode())[0].decode(errors="replace")
    return name
