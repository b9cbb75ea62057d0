"""Confining repository paths and refs: what an agent names must stay inside the repository.

Refused: absolute paths, ``..`` components, anything under ``.git``, NUL bytes, and paths and
refs that could be read as git options.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from cedargate.errors import ToolInputError

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def confined_path(path: str, field: str = "path") -> str:
    """Normalise a repository-relative path or raise naming the field and the rule broken."""
    if not path or "\x00" in path:
        raise ToolInputError(f"field `{field}`: path is empty or contains a NUL byte")
    pure = PurePosixPath(path)
    if path.startswith("-"):
        raise ToolInputError(f"field `{field}`: `{path}` begins with `-`, which git could read as an option")
    if pure.is_absolute() or path.startswith("\\"):
        raise ToolInputError(f"field `{field}`: `{path}` is absolute; give a path relative to the repository root")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if ".." in parts:
        raise ToolInputError(f"field `{field}`: `{path}` leaves the repository (`..` is not allowed)")
    if any(p.lower() == ".git" for p in parts):
        raise ToolInputError(f"field `{field}`: `{path}` is inside `.git`, which tools may not touch")
    if not parts:
        raise ToolInputError(f"field `{field}`: `{path}` names the repository root, not a file")
    return "/".join(parts)


def safe_ref(ref: str, field: str) -> str:
    """A branch, tag or commit name that git cannot mistake for an option or a range."""
    if not _REF.match(ref) or ".." in ref or ref.endswith((".lock", "/", ".")) or "//" in ref:
        raise ToolInputError(f"field `{field}`: `{ref}` is not an acceptable git ref name")
    return ref


_ANCESTRY = re.compile(r"(?:[~^][0-9]{0,4})+$")
"""``~2``, ``^``, ``^2~3``: ancestors of a named revision, as git writes them (no ``^{...}``, no ranges)."""


def safe_revision(revision: str, field: str) -> str:
    """A ref name (see ``safe_ref``), optionally followed by ancestry steps such as ``HEAD~1``.

    For arguments that only name a commit to read from or start at; branch names stay
    ``safe_ref``, since git refuses ``~`` and ``^`` in them.
    """
    suffix = _ANCESTRY.search(revision)
    name = revision[: suffix.start()] if suffix else revision
    try:
        safe_ref(name, field)
    except ToolInputError:
        raise ToolInputError(
            f"field `{field}`: `{revision}` is not an acceptable revision (a branch, tag or commit, "
            "optionally followed by `~N` or `^N`)"
        ) from None
    return revision


def worktree_file(root: Path, path: str, field: str = "path") -> Path:
    """A file path inside a worktree, refusing every symlink on the way (the file itself included).

    Symlinks are refused rather than resolved: a link that points inside today can be
    changed to point outside by the next write, so tools never follow them.
    """
    relative = confined_path(path, field)
    current = root
    for part in relative.split("/"):
        current = current / part
        if current.is_symlink():
            raise ToolInputError(
                f"field `{field}`: `{current.relative_to(root)}` is a symbolic link; tools do not follow links"
            )
    return current
