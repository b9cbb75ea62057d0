"""Confining repository paths and refs: what an agent names must stay inside the repository.

Refused: absolute paths, ``..`` components, anything under ``.git``, NUL bytes, and paths and
refs that could be read as git options. Files are written into a worktree through directory
file descriptors, never through a path name a concurrent process could redirect.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Final

from cedargate.errors import CedargateError, HandlerError, ToolInputError

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
NAME_MAX: Final = 255
"""The longest file or folder name (in bytes) the filesystems git checks out onto accept."""
_FOLDER: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
    """A branch, tag or commit name that git cannot mistake for an option or a range, and that git accepts.

    git's own rules (``git check-ref-format``) are checked here too, so a name git would refuse
    later (``agent/.hidden``, ``agent/a.lock/b``) is refused up front, naming the field.
    """
    if not _REF.match(ref) or ".." in ref or ref.endswith("."):
        raise ToolInputError(f"field `{field}`: `{ref}` is not an acceptable git ref name")
    for part in ref.split("/"):
        if not part or part.startswith(".") or part.endswith(".lock"):
            raise ToolInputError(
                f"field `{field}`: `{ref}` is not an acceptable git ref name (no part between slashes may be "
                "empty, begin with `.` or end with `.lock`)"
            )
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


def refuse_long_names(path: str, field: str = "path") -> None:
    """Refuse a path with a part longer than filesystems accept: nobody could check such a file out."""
    for part in path.split("/"):
        size = len(part.encode(errors="surrogatepass"))
        if size > NAME_MAX:
            raise ToolInputError(
                f"field `{field}`: `{part[:40]}...` is {size} bytes, over the {NAME_MAX}-byte limit for a file "
                "or folder name; choose a shorter name"
            )


@contextmanager
def file_written(root: Path, path: str, content: bytes, field: str = "path") -> Iterator[None]:
    """Write ``content`` to ``path`` in the worktree at ``root`` for the block; undone if the block fails.

    Every folder on the way is opened from its parent's descriptor without following links,
    and the file is replaced by renaming a new file over it: a folder swapped for a link, or a
    FIFO left at the path, is refused rather than written through or blocked on. Only a
    regular file is replaced; its permissions are kept. If anything fails, here or in the
    block, the old file is put back and the folders made for the new one are removed.
    """
    relative = confined_path(path, field)
    undo: list[Callable[[], None]] = []
    done: list[Callable[[], None]] = []
    folders: list[int] = []
    try:
        try:
            folders.append(os.open(root, _FOLDER))
            *names, name = relative.split("/")
            for depth, part in enumerate(names, 1):
                folders.append(_folder(folders[-1], part, "/".join(names[:depth]), undo, field))
            _replace(folders[-1], name, relative, content, undo, done, field)
        except OSError as error:
            raise ToolInputError(
                f"field `{field}`: `{relative}` cannot be written in the worktree ({error.strerror}); "
                "choose another path"
            ) from None
        yield
    except BaseException:
        for step in reversed(undo):
            with suppress(OSError):
                step()
        raise
    else:
        for step in done:
            with suppress(OSError):
                step()
    finally:
        for fd in folders:
            os.close(fd)


def _folder(parent: int, name: str, shown: str, undo: list[Callable[[], None]], field: str) -> int:
    """Open (making it if missing) the folder ``name`` in ``parent``, refusing a link or a file there."""
    try:
        return _open_folder(parent, name, shown, field)
    except FileNotFoundError:
        pass
    with suppress(FileExistsError):  # a folder made meanwhile is opened like any other
        os.mkdir(name, dir_fd=parent)
        undo.append(lambda: os.rmdir(name, dir_fd=parent))
    return _open_folder(parent, name, shown, field)


def _open_folder(parent: int, name: str, shown: str, field: str) -> int:
    """The folder ``name`` in ``parent``, opened without following a link; a link or a file there is refused."""
    try:
        return os.open(name, _FOLDER, dir_fd=parent)
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        raise _refusal(parent, name, shown, field, folder_wanted=True) from None


def _replace(
    folder: int,
    name: str,
    relative: str,
    content: bytes,
    undo: list[Callable[[], None]],
    done: list[Callable[[], None]],
    field: str,
) -> None:
    """Put a new file with ``content`` at ``name`` by renaming it there; the old one is kept until ``done``."""
    try:
        old: os.stat_result | None = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise _refusal(folder, name, relative, field, folder_wanted=False)
    spare = f".cedargate-{secrets.token_hex(8)}"
    fd = os.open(f"{spare}.new", _NEW_FILE, 0o666, dir_fd=folder)
    undo.append(lambda: os.unlink(f"{spare}.new", dir_fd=folder))
    with os.fdopen(fd, "wb") as new:
        new.write(content)
        if old is not None:
            os.fchmod(new.fileno(), stat.S_IMODE(old.st_mode))
    if old is not None:
        # A second name for the old file: renaming it back undoes the write, whatever the block did.
        os.link(name, f"{spare}.old", src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        undo.append(lambda: os.rename(f"{spare}.old", name, src_dir_fd=folder, dst_dir_fd=folder))
        done.append(lambda: os.unlink(f"{spare}.old", dir_fd=folder))
    os.rename(f"{spare}.new", name, src_dir_fd=folder, dst_dir_fd=folder)
    if old is None:
        undo.append(lambda: os.unlink(name, dir_fd=folder))


def _refusal(folder: int, name: str, shown: str, field: str, *, folder_wanted: bool) -> CedargateError:
    """Why ``name`` in ``folder`` cannot be written to (or, with ``folder_wanted``, through)."""
    try:
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return ToolInputError(f"field `{field}`: `{shown}` is a symbolic link; tools do not follow links")
    if folder_wanted:
        return HandlerError(
            f"field `{field}`: `{shown}` is {_kind(mode)}, not a folder, so nothing can be written inside it; "
            "choose another path"
        )
    if stat.S_ISDIR(mode):
        return HandlerError(f"field `{field}`: `{shown}` is a folder; name a file inside it")
    return HandlerError(
        f"field `{field}`: `{shown}` is {_kind(mode)}, not a regular file (a test run may have left it); "
        "tools write only regular files: choose another path"
    )


def _kind(mode: int) -> str:
    """What a file of ``mode`` is, for a message."""
    kinds = (
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a special file")
