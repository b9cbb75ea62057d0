"""Step 4, authorize: one Cedar decision per call, failing closed on any evaluation error.

Cedar skips a policy whose evaluation errors, which can turn a ``forbid`` into an allow.
cedargate treats any diagnostic error, and any request Cedar cannot even build, as a deny.
A request that cannot be decided differently from one already decided reuses that decision
(``decision_cache``).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from typing import Any

import cedarpy

from cedargate.bounded_cache import BoundedCache
from cedargate.cedar_types import ACTION, AGENT, EntityRef
from cedargate.config import Config
from cedargate.decision import Decision, DeterminingPolicy, Effect
from cedargate.decision_cache import MAX_DECISIONS, ContextPath, context_paths, request_key
from cedargate.entities import principal_entities, resource_entities
from cedargate.identity import Principal
from cedargate.policy_set import PolicyInfo, PolicySet
from cedargate.policy_slice import Uid, action_ancestry, applicable_ids, entity_ancestry, sliced_policy_set
from cedargate.resolve import Resource

_MAX_SLICES = 4096
"""Cached policy slices, one per (principal, action, resource) seen; the cache restarts when full."""
_MAX_ENTITY_GRAPHS = 256
"""Cached entity graphs, one per principal (a task is part of it, so a server lives through many)."""


class _Slice:
    """The policies that can apply to one (principal, action, resource), and the context paths they read.

    One object per scope: decisions are kept under (slice, request key), and a slice hashes
    and compares by identity, so a kept decision is found without hashing the scope again.
    """

    __slots__ = ("paths", "policies")

    def __init__(self, policies: cedarpy.PolicySet, paths: tuple[ContextPath, ...] | None) -> None:
        self.policies = policies
        self.paths = paths
        """``None`` when the slice could not be analysed: its decisions are not reused."""


class Authorizer:
    """Evaluates requests against a loaded policy set; entity graphs are built once and kept."""

    def __init__(self, policy_set: PolicySet, config: Config) -> None:
        self._policy_set = policy_set
        self._base_entities = resource_entities(config)
        self._known_teams = {e["uid"]["id"] for e in self._base_entities if e["uid"]["type"] == "Team"}
        self._entities_by_principal: BoundedCache[Principal, tuple[cedarpy.Entities, dict[Uid, frozenset[Uid]]]] = (
            BoundedCache(_MAX_ENTITY_GRAPHS)
        )
        self._action_ancestry = action_ancestry(policy_set.schema_json)
        self._slices: BoundedCache[tuple[Principal, str, Uid], _Slice] = BoundedCache(_MAX_SLICES)
        self._decisions: BoundedCache[Hashable, Decision] = BoundedCache(MAX_DECISIONS)
        self._order = {pid: index for index, pid in enumerate(policy_set.info)}
        self._determining_by_id: dict[str, DeterminingPolicy] = {}

    @property
    def policy_set(self) -> PolicySet:
        return self._policy_set

    def _entities_for(self, principal: Principal) -> tuple[cedarpy.Entities, dict[Uid, frozenset[Uid]]]:
        entry = self._entities_by_principal.get(principal)
        if entry is None:
            graph = self._base_entities + principal_entities(principal, self._known_teams)
            entities = cedarpy.Entities.from_json_str(json.dumps(graph), schema=self._policy_set.schema)
            entry = self._entities_by_principal.put(principal, (entities, entity_ancestry(graph)))
        return entry

    def _slice_for(self, key: tuple[Principal, str, Uid]) -> _Slice:
        """Only the policies whose scope can match (see ``policy_slice``); the whole set if unindexed."""
        sliced = self._slices.get(key)
        if sliced is not None:
            return sliced
        static = self._policy_set.static_policies
        if not static:
            sliced = _Slice(self._policy_set.policies, None)
        else:
            principal, action, resource = key
            _, ancestry = self._entities_for(principal)
            ids = applicable_ids(
                static, (AGENT, principal.agent), (ACTION, action), resource, ancestry, self._action_ancestry
            )
            paths = context_paths(static[pid] for pid in ids)
            sliced = _Slice(sliced_policy_set(static, ids), paths)
        if len(self._slices) >= _MAX_SLICES:
            self._decisions.clear()  # they are kept per slice: start over with the slices, so old ones are freed
        return self._slices.put(key, sliced)

    def authorize(self, principal: Principal, action: str, resource: Resource, context: Mapping[str, Any]) -> Decision:
        """Decide one request; never raises for a policy problem, it denies instead."""
        scope = (principal, action, (resource.ref.type, resource.ref.id))
        try:
            sliced = self._slice_for(scope)
            facts = None if sliced.paths is None else request_key(context, sliced.paths)
            key = None if facts is None else (sliced, facts)
            known = None if key is None else self._decisions.get(key)
            if known is not None:
                return known
            entities, _ = self._entities_for(principal)
            request = {
                "principal": EntityRef(AGENT, principal.agent).to_json(),
                "action": EntityRef(ACTION, action).to_json(),
                "resource": resource.ref.to_json(),
                "context": dict(context),
            }
            result = cedarpy.is_authorized(request, sliced.policies, entities, self._policy_set.schema)
        except Exception as exc:  # boundary: any engine failure is a deny, never an allow
            return Decision(effect=Effect.DENY, errors=(f"authorization engine failed: {exc}",))
        decision = self._decision_from(result)
        if key is not None and not decision.errors:
            self._decisions.put(key, decision)
        return decision

    def _determining(self, policy_id: str) -> DeterminingPolicy:
        """The (immutable) audit view of a policy, built once per policy rather than once per call."""
        found = self._determining_by_id.get(policy_id)
        if found is None:
            found = self._determining_by_id[policy_id] = _determining(self._policy_set.info[policy_id])
        return found

    def _decision_from(self, result: cedarpy.AuthzResult) -> Decision:
        info = self._policy_set.info
        # Cedar reports reasons as a set; file order keeps explanations stable whatever was evaluated.
        reasons = sorted((pid for pid in result.diagnostics.reasons if pid in info), key=self._order.__getitem__)
        determining = tuple(self._determining(pid) for pid in reasons)
        errors = tuple(self._policy_set.readable(e) for e in result.diagnostics.errors)
        if errors or result.decision is cedarpy.Decision.NoDecision:
            return Decision(effect=Effect.DENY, errors=errors or ("Cedar reached no decision",))
        if result.decision is cedarpy.Decision.Allow:
            return Decision(effect=Effect.ALLOW, policies=determining)
        if determining and all(p.approval_group for p in determining):
            return Decision(effect=Effect.APPROVAL_REQUIRED, policies=determining)
        return Decision(effect=Effect.DENY, policies=determining)


def _determining(policy: PolicyInfo) -> DeterminingPolicy:
    return DeterminingPolicy(
        id=policy.display_id,
        reason=policy.reason,
        file=policy.name,
        line=policy.line,
        approval_group=policy.approval_group,
        self_approval=policy.self_approval,
    )
