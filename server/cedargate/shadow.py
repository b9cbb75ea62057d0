"""Shadow mode: decisions that are computed and audited but not enforced.

Two scopes, both from ``[policy]`` in the config. A shadow *file* is evaluated alongside the
enforced set; when adding it would change the decision, the event records what it would have
decided and the enforced decision stands. A shadow *environment* enforces nothing: a deny is
recorded as "would deny" and the call runs. Evaluation errors are decisions like any other
here: in a shadow environment they are recorded, elsewhere they deny (fail closed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from cedargate.authorize import Authorizer
from cedargate.decision import Decision, Effect
from cedargate.identity import Principal
from cedargate.resolve import Resource

ShadowScope = Literal["file", "environment"]


class ShadowVerdict(BaseModel):
    """What the shadowed policies would have decided, as the audit event records it."""

    model_config = ConfigDict(frozen=True)

    scope: ShadowScope
    would: Effect
    decision: Decision


@dataclass(frozen=True)
class Verdict:
    """The decision to record, and what shadow mode has to say about it."""

    decision: Decision
    shadow: ShadowVerdict | None = None

    @property
    def enforced(self) -> bool:
        """False only in a shadow environment: the decision is recorded, the call runs."""
        return self.shadow is None or self.shadow.scope != "environment"


@dataclass(frozen=True)
class ShadowingAuthorizer:
    """Decides with every policy, and enforces only what is not in shadow.

    ``enforcing`` holds the policy set without the shadow files, or is ``None`` when there
    are none; ``full`` holds every file.
    """

    full: Authorizer
    enforcing: Authorizer | None
    shadow_environments: Collection[str]

    def decide(self, principal: Principal, action: str, resource: Resource, context: Mapping[str, Any]) -> Verdict:
        full = self.full.authorize(principal, action, resource, context)
        if resource.environment in self.shadow_environments:
            if full.allowed:
                return Verdict(full)
            return Verdict(full, ShadowVerdict(scope="environment", would=full.effect, decision=full))
        if self.enforcing is None:
            return Verdict(full)
        enforced = self.enforcing.authorize(principal, action, resource, context)
        if enforced.effect is full.effect:
            return Verdict(enforced)
        return Verdict(enforced, ShadowVerdict(scope="file", would=full.effect, decision=full))
