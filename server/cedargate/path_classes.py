"""Path classes: named sets of gitignore patterns, matched against the paths a call changes.

Gitignore syntax is what repository owners already write (``.gitignore``, ``CODEOWNERS``): a
pattern without a slash matches at any depth (``*.tf``), a leading slash anchors it to the
root (``/Makefile``), a trailing slash means a folder and everything in it
(``.github/workflows/``), and ``!`` takes paths back out. Paths are matched one by one
(pathspec's ``GitIgnoreSpec``): unlike git's ignore rules, a ``!`` pattern takes a file back
out of a folder an earlier pattern named.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Annotated

import pathspec
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

ClassPatterns = tuple[tuple[str, tuple[str, ...]], ...]
"""Class names with their patterns, sorted (a name may come twice, each list matched on its own):
hashable, so compiled matchers are cached."""


def checked_pattern(pattern: str) -> str:
    """One gitignore pattern as given; refused saying why git would not read it as meant."""
    if not pattern.strip():
        raise _invalid("a pattern is empty (gitignore would skip it); remove it")
    if pattern.startswith("#"):
        raise _invalid(f"`{pattern}` is a comment in gitignore syntax; write `\\#` for a leading `#`")
    try:
        pathspec.GitIgnoreSpec.from_lines([pattern])
    except ValueError as exc:
        raise _invalid(f"`{pattern}` is not a gitignore pattern ({exc})") from exc
    return pattern


def _invalid(problem: str) -> PydanticCustomError:
    return PydanticCustomError("path_pattern", "{problem}", {"problem": problem})


def _some_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    if not patterns:
        raise _invalid("a class needs at least one pattern; remove the class or give it patterns")
    return patterns


def _a_list(value: object) -> object:
    if isinstance(value, str):
        raise _invalid(f'a class is a list of gitignore patterns: write `["{value}"]`')
    return value


PathPattern = Annotated[str, AfterValidator(checked_pattern)]
Patterns = Annotated[tuple[PathPattern, ...], BeforeValidator(_a_list), AfterValidator(_some_patterns)]


def classify(paths: Iterable[str], classes: ClassPatterns) -> frozenset[str]:
    """The names of the classes that any of ``paths`` falls in."""
    paths = tuple(paths)
    return frozenset(name for name, spec in _compiled(classes) if any(spec.match_file(path) for path in paths))


def any_unclassified(paths: Iterable[str], classes: ClassPatterns) -> bool:
    """Whether some of ``paths`` falls in no class (what "only docs changed" needs to know)."""
    specs = [spec for _, spec in _compiled(classes)]
    return any(not any(spec.match_file(path) for spec in specs) for path in paths)


@functools.lru_cache(maxsize=256)
def _compiled(classes: ClassPatterns) -> tuple[tuple[str, pathspec.GitIgnoreSpec], ...]:
    return tuple((name, pathspec.GitIgnoreSpec.from_lines(patterns)) for name, patterns in classes)
