"""The policies that can apply to one (principal, action, resource): Cedar evaluates only those.

Cedar checks every policy of a set on every request, so a decision costs time in proportion
to the whole set (about 4 ms for 1,000 policies). A policy whose scope (``principal``,
``action``, ``resource`` constraints) cannot match a request is never satisfied and, because
the scope is checked before ``when``/``unless``, never raises an evaluation error either: it
cannot change the decision, its reasons or its errors. Slicing it away is therefore exact.

The check is conservative: any scope shape this module does not recognise (a template slot,
a future operator) keeps the policy. Ancestors come from the same entity graph and schema
Cedar is given, closed transitively.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import cedarpy

Uid = tuple[str, str]
Ancestry = Mapping[Uid, frozenset[Uid]]


def _uid(ref: Mapping[str, Any]) -> Uid:
    return (str(ref.get("type")), str(ref.get("id")))


def entity_ancestry(graph: Iterable[Mapping[str, Any]]) -> dict[Uid, frozenset[Uid]]:
    """Each entity's ancestors, itself included (Cedar's ``in`` is reflexive), from entity JSON."""
    parents = {_uid(e["uid"]): [_uid(p) for p in e.get("parents", [])] for e in graph}
    return {uid: _closure(uid, parents) for uid in parents}


def action_ancestry(schema_json: Mapping[str, Any]) -> dict[Uid, frozenset[Uid]]:
    """Each action's groups, itself included, from the schema's ``memberOf`` lists."""
    parents: dict[Uid, list[Uid]] = {}
    for namespace, body in schema_json.items():
        prefix = f"{namespace}::Action" if namespace else "Action"
        for name, action in body.get("actions", {}).items():
            parents[(prefix, name)] = [(m.get("type", prefix), m["id"]) for m in action.get("memberOf") or []]
    return {uid: _closure(uid, parents) for uid in parents}


def _closure(uid: Uid, parents: Mapping[Uid, list[Uid]]) -> frozenset[Uid]:
    seen = {uid}
    todo = list(parents.get(uid, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(parents.get(current, ()))
    return frozenset(seen)


def scope_may_match(scope: Mapping[str, Any], uid: Uid, ancestors: frozenset[Uid]) -> bool:
    """False only when the scope constraint provably excludes ``uid``."""
    op = scope.get("op")
    if op == "All":
        return True
    if op == "==" and "entity" in scope:
        return _uid(scope["entity"]) == uid
    if op == "in" and "entity" in scope:
        return _uid(scope["entity"]) in ancestors
    if op == "in" and "entities" in scope:
        return any(_uid(e) in ancestors for e in scope["entities"])
    if op == "is" and "entity_type" in scope:
        if scope["entity_type"] != uid[0]:
            return False
        inner = scope.get("in")
        if inner is None:
            return True
        return _uid(inner["entity"]) in ancestors if "entity" in inner else True
    return True  # slots and unknown shapes: keep the policy


def applicable_ids(
    static_policies: Mapping[str, Any],
    principal: Uid,
    action: Uid,
    resource: Uid,
    entities: Ancestry,
    actions: Ancestry,
) -> list[str]:
    """Ids of the policies whose scope may match this request, in set order."""
    checks = (
        ("principal", principal, entities.get(principal, frozenset({principal}))),
        ("action", action, actions.get(action, frozenset({action}))),
        ("resource", resource, entities.get(resource, frozenset({resource}))),
    )
    return [
        pid
        for pid, policy in static_policies.items()
        if all(scope_may_match(policy.get(key, {}), uid, anc) for key, uid, anc in checks)
    ]


def sliced_policy_set(static_policies: Mapping[str, Any], ids: list[str]) -> cedarpy.PolicySet:
    """A parsed set of just ``ids``, keeping Cedar's ids so reasons and errors name the same policies."""
    body = {"staticPolicies": {pid: static_policies[pid] for pid in ids}, "templates": {}, "templateLinks": []}
    return cedarpy.PolicySet.from_json_str(json.dumps(body))
