"""The canonical JSON of an audit record and of a tool result: the exact text hashes cover.

The definition is what the standard library writes with sorted keys, no spaces and UTF-8
(``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``): every
log written so far was hashed over that, and ``cedargate audit verify`` recomputes it from
each parsed line. orjson writes the same text several times faster, except for values a
record holds rarely: floats outside ``[1e-4, 1e16)`` (the two format them differently),
NaN and infinities (orjson writes ``null``), integers beyond 64 bits and lone surrogates
(orjson refuses both). A record is handed to orjson only when none of those can be in it;
otherwise the standard library writes it.

Only the free-form parts of a record (``FREE_FORM``: the arguments the agent sent, what a
handler reported) can hold such values; every other field is a string, an integer, a
boolean or ``duration_ms``, typed by ``AuditEvent``. A record that is not shaped so (an
edited line being verified) may be encoded differently and then fails verification, as an
edited line should.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

FREE_FORM: Final = ("arguments", "execution")
"""The record's fields whose values come from outside cedargate's types."""

_REFERENCE: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_STRICT_REFERENCE: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_FAST_OPTIONS: Final = orjson.OPT_SORT_KEYS
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SAME_FLOAT_LOW: Final = 1e-4
_SAME_FLOAT_HIGH: Final = 1e16
"""Both encoders write a float in ``[1e-4, 1e16)`` (and zero) as ``repr`` does."""


def canonical_json(record: dict[str, Any]) -> str:
    """The record's canonical text (see the module docstring); always valid UTF-8.

    A lone surrogate (only an in-process caller can send one; the transports refuse them)
    is written as U+FFFD, so the line can be encoded and a reader sees the same text the
    hash covers.
    """
    if _fast_encoder_agrees(record):
        try:
            return orjson.dumps(record, option=_FAST_OPTIONS).decode()
        except orjson.JSONEncodeError:  # a lone surrogate or a 65-bit integer: the reference decides
            pass
    return _LONE_SURROGATE.sub("\ufffd", _REFERENCE.encode(record))


def canonical_result(payload: dict[str, Any]) -> bytes:
    """A tool result's canonical JSON in UTF-8 (what ``result_sha256`` hashes), all of it checked.

    Raises ``TypeError`` or ``ValueError`` when the result is not JSON: a value JSON has no
    form for, NaN or an infinity, or a lone surrogate.
    """
    if _plain(payload):
        try:
            return orjson.dumps(payload, option=_FAST_OPTIONS)
        except orjson.JSONEncodeError:
            pass
    return _STRICT_REFERENCE.encode(payload).encode()


def _fast_encoder_agrees(record: dict[str, Any]) -> bool:
    for value in record.values():
        if type(value) is float and not _same_float(value):
            return False
    return all(_plain(record[name]) for name in FREE_FORM if name in record)


def _same_float(value: float) -> bool:
    return value == 0.0 or _SAME_FLOAT_LOW <= abs(value) < _SAME_FLOAT_HIGH


def _plain(value: Any) -> bool:
    """True when orjson writes ``value`` exactly as the reference encoder does."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True  # a long integer or a lone surrogate makes orjson raise: caught by the caller
    if kind is float:
        return _same_float(value)
    if kind is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False
