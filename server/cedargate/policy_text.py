"""Splitting Cedar policy text into statements with their positions.

cedarpy's parse and validation errors carry no line or column; cedargate finds the statement
at fault by parsing statements one at a time, so every error can name ``file:line:column``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Statement:
    """One policy statement (annotations included) and where it starts, 1-based."""

    text: str
    line: int
    column: int


def split_statements(text: str) -> list[Statement]:
    """Split on top-level ``;``, skipping strings and ``//`` comments; blank tails are dropped."""
    statements: list[Statement] = []
    start: int | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if start is None and not ch.isspace():
            start = i
        if ch == '"':
            i = _skip_string(text, i)
            continue
        if ch == ";" and start is not None:
            statements.append(_statement(text, start, i + 1))
            start = None
        i += 1
    if start is not None:
        statements.append(_statement(text, start, n))
    return statements


def _skip_string(text: str, i: int) -> int:
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return i


def _statement(text: str, start: int, end: int) -> Statement:
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return Statement(text=text[start:end], line=line, column=column)
