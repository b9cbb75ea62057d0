"""Refusing a policy that asks for a path class no config defines.

``context.changes.classes.contains("CI")`` where the config defines ``ci`` is never true: the
forbid it guards never applies, and the changes it was written to stop go through. A class
name a policy asks for must be defined under ``[path_classes]`` or by some repository.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final

from cedargate.errors import PolicyError
from cedargate.policy_set import PolicySet

_SET_TESTS: Final = ("contains", "containsAny", "containsAll", "==")


def refuse_undefined_path_classes(policies: PolicySet, defined: Collection[str]) -> None:
    """Raise ``PolicyError`` naming the first policy that asks for a class outside ``defined``."""
    for policy_id, info in policies.info.items():
        conditions = policies.static_policies.get(policy_id, {}).get("conditions", [])
        for name in sorted(set(class_names_asked(conditions))):
            if name not in defined:
                known = ", ".join(f"`{c}`" for c in sorted(defined)) or "none"
                raise PolicyError(
                    f"{info.file}:{info.line}:{info.column}: policy `{info.display_id}` asks for path class "
                    f"`{name}`, which the config as loaded does not define (defined: {known}), so it would never "
                    "match; fix the name, or define the class under `[path_classes]` (a config edit applies when "
                    "the server restarts)"
                )


def class_names_asked(node: Any) -> Iterator[str]:
    """Every string a condition tests ``context.changes.classes`` against (in Cedar's JSON form)."""
    if isinstance(node, list):
        for item in node:
            yield from class_names_asked(item)
        return
    if not isinstance(node, dict):
        return
    for test in _SET_TESTS:
        operands = node.get(test)
        if isinstance(operands, dict) and {"left", "right"} <= operands.keys():
            left, right = operands["left"], operands["right"]
            if _is_classes(left):
                yield from _strings(right)
            elif _is_classes(right):
                yield from _strings(left)
    for value in node.values():
        yield from class_names_asked(value)


def _is_classes(node: Any) -> bool:
    return _attr(node, "classes") is not None and _attr(_attr(node, "classes"), "changes") == {"Var": "context"}


def _attr(node: Any, name: str) -> Any:
    """The object ``node`` reads attribute ``name`` of (``{".": {"left": X, "attr": name}}``), or ``None``."""
    if isinstance(node, Mapping):
        access = node.get(".")
        if isinstance(access, Mapping) and access.get("attr") == name:
            return access.get("left")
    return None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        value = node.get("Value")
        if isinstance(value, str):
            yield value
        for item in node.get("Set", []) if isinstance(node.get("Set"), list) else []:
            yield from _strings(item)
