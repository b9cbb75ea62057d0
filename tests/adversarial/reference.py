"""A small, obviously-correct model of cedargate's decision rules, for differential testing.

Policies are kept to a shape whose meaning can be computed by hand: an effect, an optional
action scope (one tool or one risk group), an optional environment scope, and at most one
condition. The rules, as DESIGN.md states them:

- default deny: nothing satisfied means deny;
- forbid wins over permit;
- any evaluation error denies (even when a permit is also satisfied);
- approval-required only when every satisfied forbid carries ``@approval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Condition = Literal["none", "interactive", "autonomous", "not_approved", "approved", "overflow"]
CONDITION_TEXT: dict[Condition, str] = {
    "none": "",
    "interactive": 'when { context.mode == "interactive" }',
    "autonomous": 'when { context.mode == "autonomous" }',
    "not_approved": "unless { context.approval.granted }",
    "approved": "when { context.approval.granted }",
    # Long overflow: a runtime error on every request that reaches it (call_count >= 1).
    "overflow": "when { context.session.call_count + 9223372036854775807 > 0 }",
}


@dataclass(frozen=True)
class RefPolicy:
    policy_id: str
    effect: Literal["permit", "forbid"]
    tool: str | None
    risk: str | None
    environment: str | None
    condition: Condition
    approval: str | None

    def cedar(self) -> str:
        annotations = f'@id("{self.policy_id}")\n@reason("generated")\n'
        if self.approval is not None:
            annotations += f'@approval("{self.approval}")\n'
        if self.tool is not None:
            action = f'action == Action::"{self.tool}"'
        elif self.risk is not None:
            action = f'action in Action::"risk:{self.risk}"'
        else:
            action = "action"
        resource = f'resource in Environment::"{self.environment}"' if self.environment else "resource"
        return f"{annotations}{self.effect} (principal, {action}, {resource})\n{CONDITION_TEXT[self.condition]};\n"


@dataclass(frozen=True)
class RefRequest:
    tool: str
    risk: str
    environment: str
    mode: str
    approval_granted: bool = False


@dataclass(frozen=True)
class RefDecision:
    effect: Literal["allow", "deny", "approval_required"]
    policies: frozenset[str]
    error: bool = False


def _applies(policy: RefPolicy, request: RefRequest) -> bool | None:
    """True/False whether the policy is satisfied; ``None`` when evaluating it errors."""
    if policy.tool is not None and policy.tool != request.tool:
        return False
    if policy.risk is not None and policy.risk != request.risk:
        return False
    if policy.environment is not None and policy.environment != request.environment:
        return False
    match policy.condition:
        case "none":
            return True
        case "interactive" | "autonomous":
            return request.mode == policy.condition
        case "not_approved":
            return not request.approval_granted
        case "approved":
            return request.approval_granted
        case "overflow":
            return None


def decide(policies: list[RefPolicy], request: RefRequest) -> RefDecision:
    results = [(p, _applies(p, request)) for p in policies]
    if any(r is None for _, r in results):
        return RefDecision("deny", frozenset(), error=True)
    forbids = [p for p, r in results if r and p.effect == "forbid"]
    if forbids:
        effect: Literal["deny", "approval_required"] = (
            "approval_required" if all(p.approval for p in forbids) else "deny"
        )
        return RefDecision(effect, frozenset(p.policy_id for p in forbids))
    permits = [p for p, r in results if r and p.effect == "permit"]
    if permits:
        return RefDecision("allow", frozenset(p.policy_id for p in permits))
    return RefDecision("deny", frozenset())
