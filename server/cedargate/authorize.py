"""Step 4, authorize: one Cedar decision per call, failing closed on any evaluation error.

Cedar skips a policy whose evaluation errors, which can turn a ``forbid`` into an allow.
cedargate treats any diagnostic error, and any request Cedar cannot even build, as a deny.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cedarpy

from cedargate.cedar_types import ACTION, AGENT, EntityRef
from cedargate.config import Config
from cedargate.decision import Decision, DeterminingPolicy, Effect
from cedargate.entities import principal_entities, resource_entities
from cedargate.identity import Principal
from cedargate.policy_set import PolicyInfo, PolicySet
from cedargate.resolve import Resource


class Authorizer:
    """Evaluates requests against a loaded policy set; entity graphs are built once and kept."""

    def __init__(self, policy_set: PolicySet, config: Config) -> None:
        self._policy_set = policy_set
        self._base_entities = resource_entities(config)
        self._known_teams = {e["uid"]["id"] for e in self._base_entities if e["uid"]["type"] == "Team"}
        self._entities_by_principal: dict[Principal, cedarpy.Entities] = {}

    @property
    def policy_set(self) -> PolicySet:
        return self._policy_set

    def _entities_for(self, principal: Principal) -> cedarpy.Entities:
        entities = self._entities_by_principal.get(principal)
        if entities is None:
            graph = self._base_entities + principal_entities(principal, self._known_teams)
            entities = cedarpy.Entities.from_json_str(json.dumps(graph), schema=self._policy_set.schema)
            self._entities_by_principal[principal] = entities
        return entities

    def authorize(self, principal: Principal, action: str, resource: Resource, context: Mapping[str, Any]) -> Decision:
        """Decide one request; never raises for a policy problem, it denies instead."""
        request = {
            "principal": EntityRef(AGENT, principal.agent).to_json(),
            "action": EntityRef(ACTION, action).to_json(),
            "resource": resource.ref.to_json(),
            "context": dict(context),
        }
        try:
            result = cedarpy.is_authorized(
                request, self._policy_set.policies, self._entities_for(principal), self._policy_set.schema
            )
        except Exception as exc:  # boundary: any engine failure is a deny, never an allow
            return Decision(effect=Effect.DENY, errors=(f"authorization engine failed: {exc}",))
        return self._decision_from(result)

    def _decision_from(self, result: cedarpy.AuthzResult) -> Decision:
        info = self._policy_set.info
        determining = tuple(_determining(info[pid]) for pid in result.diagnostics.reasons if pid in info)
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
        file=policy.file.name,
        line=policy.line,
        approval_group=policy.approval_group,
        self_approval=policy.self_approval,
    )
