"""Reusing a Cedar decision for a request that cannot be decided differently.

A Cedar decision is a pure function of the policies, the entities and the request. For one
(principal, action, resource) the policies (a slice) and the entities are fixed, so what can
still change the answer is the context, and only in two ways:

- the values the slice's policies read: every ``context.a.b`` (or ``context has a``) path in
  their conditions. A policy that uses ``context`` any other way (as a whole value) makes the
  whole context count;
- the request's shape, which Cedar validates against the schema before evaluating: the type
  of every attribute, present or not, whether a policy reads it or not.

The cache key is therefore (principal, action, resource, the shape of the whole context, the
values at the paths read). Two requests with equal keys get the same decision, reasons and
errors from Cedar; only decisions without errors are kept, so every error is reported fresh.
The path analysis over-approximates: an expression it does not recognise counts as reading
the whole context, which only costs cache hits.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Final

ContextPath = tuple[str, ...]

_ABSENT: Final = object()
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
MAX_DECISIONS: Final = 16_384
"""Decisions one authorizer keeps; the cache starts over when full (keys are bounded below)."""
_PLAIN: Final[dict[type, str]] = {str: "str", bool: "bool", float: "float", type(None): "NoneType"}
"""Leaf types whose shape is their name (``int`` is not: a long out of range is another type)."""
_LEAVES: Final = frozenset({str, int, bool, float, type(None)})
"""The leaf types a key may hold: JSON's, which hash by value."""
_MAX_KEY_SIZE: Final = 4096
"""Characters of strings (and one per other value) a key may hold; a larger request is decided afresh."""


def context_paths(policies: Iterable[Mapping[str, Any]]) -> tuple[ContextPath, ...]:
    """Every ``context`` attribute path the policies' conditions read (in Cedar's JSON form), sorted."""
    found: set[ContextPath] = set()
    for policy in policies:
        _collect(policy.get("conditions", []), found)
    # A path whose prefix is read whole adds nothing: the prefix's value covers it.
    return tuple(sorted(p for p in found if not any(p[:n] in found for n in range(len(p)))))


def _collect(node: Any, found: set[ContextPath]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect(item, found)
        return
    if not isinstance(node, dict):
        return
    path = _context_path(node)
    if path is not None:
        found.add(path)
        return
    for value in node.values():
        _collect(value, found)


def _context_path(node: Mapping[str, Any]) -> ContextPath | None:
    """The path of ``context.a.b`` / ``context.a has b``, ``()`` for bare ``context``, else ``None``."""
    if len(node) != 1:
        return None
    ((op, operand),) = node.items()
    if op == "Var":
        return () if operand == "context" else None
    if op in (".", "has") and isinstance(operand, dict) and isinstance(operand.get("attr"), str):
        left = operand.get("left")
        inner = _context_path(left) if isinstance(left, dict) else None
        return None if inner is None else (*inner, operand["attr"])
    return None


def request_key(context: Mapping[str, Any], paths: Sequence[ContextPath]) -> Hashable | None:
    """What of ``context`` can change a decision of policies reading ``paths``; ``None``: do not reuse.

    ``paths`` come in one fixed order (``context_paths`` sorts them), so equal requests give
    equal keys without sorting on every call.
    """
    room = [_MAX_KEY_SIZE]
    try:
        values = tuple([_frozen(_at(context, path), room) for path in paths])
    except (_Unkeyable, TypeError):  # not a JSON value (never built by cedargate): decide afresh
        return None
    if room[0] < 0:  # large values (a file content a policy matches) would cost more memory than they save
        return None
    return (_shape(context), values)


class _Unkeyable(Exception):
    """A context value that cannot be part of a key (not a JSON value)."""


def _at(context: Mapping[str, Any], path: ContextPath) -> Any:
    value: Any = context
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return _ABSENT
        value = value[name]
    return value


def _type_of(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return "long" if _LONG_MIN <= value <= _LONG_MAX else "overflow"
    return kind.__name__  # bool stays "bool": True is not 1 here


def _shape(value: Any) -> Hashable:
    """Types only, by attribute, and the set of element types of each set: what Cedar validates.

    Exact types (``type(x) is``) keep the per-call cost low, and leaves of a plain type are
    named without a further call; anything unusual gets its own type name, which can only
    split keys, never merge them.
    """
    kind = type(value)
    if kind is dict:
        return tuple([(k, _PLAIN.get(type(v)) or _shape(v)) for k, v in value.items()])
    if kind is list or kind is tuple:
        return ("set", frozenset([_PLAIN.get(type(v)) or _shape(v) for v in value]))
    return _PLAIN.get(kind) or _type_of(value)


def _frozen(value: Any, room: list[int]) -> Hashable:
    """A hashable copy that keeps types apart (``True`` is not ``1``); ``room`` counts down its size."""
    kind = type(value)
    if kind is str:
        room[0] -= len(value)
        return ("str", value)
    room[0] -= 1
    if kind is dict:
        return ("record", tuple(sorted((k, _frozen(v, room)) for k, v in value.items())))
    if kind is list or kind is tuple:
        return ("set", tuple([_frozen(v, room) for v in value]))
    if value is _ABSENT:
        return ("absent",)
    if kind not in _LEAVES:
        raise _Unkeyable
    return (_type_of(value), value)
