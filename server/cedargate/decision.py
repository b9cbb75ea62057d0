"""The outcome of authorization: allow, deny, or approval-required, with the policies that decided.

The audit trail records this object itself; nothing guesses the decision afterwards.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


class DeterminingPolicy(BaseModel):
    """A policy that decided a request, as authors wrote it."""

    model_config = ConfigDict(frozen=True)

    id: str
    reason: str | None = None
    file: str
    line: int
    approval_group: str | None = None
    self_approval: bool = False


class Decision(BaseModel):
    """What Cedar decided and why; ``errors`` non-empty always means deny."""

    model_config = ConfigDict(frozen=True)

    effect: Effect
    policies: tuple[DeterminingPolicy, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @property
    def approver_groups(self) -> tuple[str, ...]:
        return tuple(sorted({p.approval_group for p in self.policies if p.approval_group}))

    @property
    def self_approvable(self) -> bool:
        """True when every policy holding the call back lets the human at the keyboard approve it."""
        return self.effect is Effect.APPROVAL_REQUIRED and all(p.self_approval for p in self.policies)

    def explain(self, *, waiting: bool = True) -> str:
        """A sentence for the agent: which policies decided and their reasons.

        ``waiting=False`` for an approval-required call for which no request is open (one was denied).
        """
        if self.errors:
            return "denied because a policy failed to evaluate (cedargate fails closed): " + "; ".join(self.errors)
        if not self.policies:
            return "denied: no policy permits this call (default deny)"
        reasons = "; ".join(f"policy `{p.id}`: {p.reason or 'no @reason given'}" for p in self.policies)
        if self.effect is Effect.APPROVAL_REQUIRED:
            groups = ", ".join(f"`{g}`" for g in self.approver_groups)
            return f"{'awaits' if waiting else 'needs'} approval by {groups}: {reasons}"
        verb = "allowed" if self.allowed else "denied"
        return f"{verb} by {reasons}"
