"""What a repository call changes: its paths and the path classes they fall in (``context.changes``).

Cedar cannot match a pattern against each member of a set, so a policy cannot ask "does any
changed path lie under ``.github/workflows/``" by itself. The config names path classes instead
(``[path_classes]``, gitignore patterns) and a policy asks
``context.changes.classes.contains("ci")``. A manifest's ``[paths]`` table says which argument
holds the paths; a diff's paths are read from its headers here, and ``repo_apply_diff`` refuses
a diff that git reads as changing any path this reading missed (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cedargate.cedar_types import REPOSITORY
from cedargate.config import Config, RepositoryConfig
from cedargate.errors import ToolInputError, quoted
from cedargate.manifest import ToolManifest
from cedargate.path_classes import ClassPatterns, any_unclassified, classify
from cedargate.repo_paths import confined_path
from cedargate.resolve import Resource


@dataclass(frozen=True)
class Changes:
    """The paths a call changes and the classes among them; empty for a call that changes no file."""

    paths: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    unclassified: bool = False
    """Some path falls in no class: ``classes == ["docs"]`` alone cannot say that only docs change."""

    def for_policy(self) -> dict[str, Any]:
        """As ``context.changes`` holds it (sorted, so a decision never depends on set order)."""
        return {"paths": sorted(self.paths), "classes": sorted(self.classes), "unclassified": self.unclassified}


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
    classes = path_classes_of(config, repo)
    return Changes(paths, classify(paths, classes), any_unclassified(paths, classes))


def path_classes_of(config: Config, repo: RepositoryConfig) -> ClassPatterns:
    """The repository's path classes: the config's ``[path_classes]`` and the repository's own.

    Each is matched on its own, and a path is in a class when either puts it there: a
    repository can widen a class the platform defines but never narrow it (its ``!`` patterns
    take back only what its own patterns put in).
    """
    return tuple(sorted((*config.path_classes.items(), *repo.path_classes.items())))


def diff_paths(patch: str) -> frozenset[str]:
    """Every path a unified diff changes, as its headers name them: old and new names alike.

    Read generously: a ``---`` line followed by ``+++`` counts wherever it stands, so a path is
    at worst reported that git would not change (the policy sees more, never less). ``/dev/null``
    is no path; ``a/`` and ``b/`` style prefixes are stripped as ``git apply -p1`` does, and
    ``//`` and ``./`` are read as git reads them. A copy's source is left as it is, so it is no
    change. Raises ``ToolInputError`` for a quoted name git would not write.
    """
    paths: set[str] = set()
    lines = patch_lines(patch)
    for number, line in enumerate(lines):
        if line.startswith("diff --git "):
            paths.update(_git_header_names(line.removeprefix("diff --git ")))
        elif line.startswith(_RENAME_HEADERS):
            paths.add(unquoted_name(line.split(" ", 2)[2]))
        elif line.startswith("--- ") and number + 1 < len(lines) and lines[number + 1].startswith("+++ "):
            for header in (line, lines[number + 1]):
                name = _patch_name(header[4:])
                if name is not None:
                    paths.add(name)
    return frozenset(normal for normal in map(_as_git_reads, paths) if normal)


def patch_lines(patch: str) -> list[str]:
    """A diff's lines as git splits them: at ``\\n`` only (a U+2028 in a name ends none), CRLF or not."""
    return [line.removesuffix("\r") for line in patch.split("\n")]


_RENAME_HEADERS: Final = ("rename from ", "rename to ", "copy to ")
_ESCAPES: Final = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
"""The C escapes git writes in a quoted name (besides three-digit octal)."""


def _patch_name(text: str) -> str | None:
    """The path on a ``---``/``+++`` line: quoted, or up to a tab (git adds one after a name with spaces)."""
    name = unquoted_name(text) if text.startswith('"') else text.split("\t", 1)[0]
    if name == "/dev/null":
        return None
    return _strip_prefix(name)


def _git_header_names(rest: str) -> list[str]:
    """The name of a ``diff --git a/NAME b/NAME`` line: read only when both halves name one path.

    A rename or copy names its paths again in its own headers; reading two different names off
    this line would guess where they part (a name may hold `` b/``).
    """
    if rest.startswith('"'):
        first, second = _split_quoted(rest)
        if second.startswith('"'):
            second = unquoted_name(second)
        names = (_strip_prefix(first), _strip_prefix(second))
    else:
        half = (len(rest) - 1) // 2
        if len(rest) % 2 == 0 or rest[half] != " ":
            return []
        names = (_strip_prefix(rest[:half]), _strip_prefix(rest[half + 1 :]))
    return [names[0]] if names[0] == names[1] else []


def _split_quoted(text: str) -> tuple[str, str]:
    """A C-quoted name off the front of ``text``, and what follows it."""
    index = 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text[index] == '"':
            return unquoted_name(text[: index + 1]), text[index + 1 :].lstrip(" ")
        else:
            index += 1
    return unquoted_name(text), ""


def _strip_prefix(name: str) -> str:
    """``git apply -p1``: drop everything up to the first slash."""
    _, slash, rest = name.partition("/")
    return rest if slash else name


def _as_git_reads(path: str) -> str:
    """``a//b`` and ``./a`` as the one path git applies them to."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def unquoted_name(name: str) -> str:
    """A path as git writes it in a header: C-quoted (``"caf\\303\\251"``) when it holds unusual bytes."""
    if not (len(name) >= 2 and name.startswith('"') and name.endswith('"')):
        return name
    body, out, index = name[1:-1], bytearray(), 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out += char.encode()
            index += 1
            continue
        escape = body[index + 1 : index + 2]
        octal = body[index + 1 : index + 4]
        if escape in _ESCAPES:
            out.append(_ESCAPES[escape])
            index += 2
        elif len(octal) == 3 and all(digit in "01234567" for digit in octal) and int(octal, 8) < 256:
            out.append(int(octal, 8))
            index += 4
        else:
            raise ToolInputError(
                f"field `patch`: {quoted(name)} is not a quoted name as git writes it (`\\{escape}` is no escape "
                "git uses); give the diff as `git diff` writes it"
            )
    return out.decode(errors="replace")
