"""Path classes: named sets of gitignore patterns, matched against the paths a call changes.

Gitignore syntax is what repository owners already write (``.gitignore``, ``CODEOWNERS``): a
pattern without a slash matches at any depth (``*.tf``), a leading slash anchors it to the
root (``/Makefile``), a trailing slash means a folder and everything in it
(``.github/workflows/``), and ``!`` takes paths back out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Annotated

import pathspec
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

ClassPatterns = tuple[tuple[str, tuple[str, ...]], ...]
"""Class names with their patterns, sorted: hashable, so compiled matchers are cached."""


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


PathPattern = Annotated[str, AfterValidator(checked_pattern)]
Patterns = Annotated[tuple[PathPattern, ...], AfterValidator(_some_patterns)]


def classify(paths: Iterable[str], classes: ClassPatterns) -> frozenset[str]:
    """The names of the classes that any of ``paths`` falls in."""
    paths = tuple(paths)
    return frozenset(name for name, spec in _compiled(classes) if any(spec.match_file(path) for path in paths))


@functools.lru_cache(maxsize=256)
def _compiled(classes: ClassPatterns) -> tuple[tuple[str, pathspec.GitIgnoreSpec], ...]:
    return tuple((name, pathspec.GitIgnoreSpec.from_lines(patterns)) for name, patterns in classes)
