"""A request as a policy author writes it (tool, agent, resource, arguments), decided offline.

``policy test`` and ``policy explain`` build the same principal, resource and context the
pipeline builds for a live call (``validate_arguments``, ``resolve_call``, ``build_context``),
and apply an approval as the gate does, so a case that passes here is decided the same way
when served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cedargate.budget import UNCAPPED_CENTS
from cedargate.change_paths import NO_CHANGES, Changes, call_changes
from cedargate.config import Config
from cedargate.decision import Decision, Effect
from cedargate.errors import ToolInputError, quoted
from cedargate.gate import self_approvable
from cedargate.identity import Principal
from cedargate.request_context import build_context
from cedargate.resolve import resolve_call
from cedargate.session import SessionState
from cedargate.shadow import Verdict
from cedargate.snapshot import Snapshot
from cedargate.validate import validate_arguments


class ApprovalFacts(BaseModel):
    """The ``context.approval`` a request carries (what an approval would add)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    granted: bool = True
    approver: str = ""
    groups: tuple[str, ...] = ()


class PolicyRequest(BaseModel):
    """Who calls which tool on what: the input of one policy test case or explanation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    agent: str
    team: str
    user: str
    mode: Literal["interactive", "autonomous"] = "interactive"
    task: str = "adhoc"
    resource: str = Field(description="repository name or AWS account id")
    args: dict[str, Any] = Field(default_factory=dict)
    approval: ApprovalFacts | None = None
    call_count: int = Field(default=1, ge=1)
    remaining_cents: int | None = Field(default=None, ge=0, le=UNCAPPED_CENTS)
    """``context.budget.remaining_cents``; by default the headroom before anything is spent."""

    @property
    def principal(self) -> Principal:
        return Principal(agent=self.agent, team=self.team, on_behalf_of=self.user, mode=self.mode, task=self.task)

    def summary(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.args.items()))
        who = f"agent `{self.agent}` (team `{self.team}`, for `{self.user}`, {self.mode})"
        return f"{who} calls `{self.tool}` on `{self.resource}`" + (f" with {args}" if args else "")


@dataclass(frozen=True)
class RequestVerdict:
    """The verdict on a request, and why its approval did not lift it (``None`` when it did or none was given)."""

    verdict: Verdict
    approval_problem: str | None = None
    changes: Changes = NO_CHANGES
    """The paths the request changes and their classes, as the policies saw them."""


def decide_request(request: PolicyRequest, snapshot: Snapshot, config: Config) -> RequestVerdict:
    """The verdict the pipeline would reach for ``request``; bad input raises ``ToolInputError``.

    As at the gate, an approval counts only where the decision without it is approval-required
    and its groups include every group the determining policies name; otherwise the verdict
    is the one without it, and ``approval_problem`` says why.
    """
    manifest = snapshot.catalog.get(request.tool)
    if manifest is None:
        known = ", ".join(f"`{t}`" for t in snapshot.catalog.tools)
        raise ToolInputError(f"unknown tool {quoted(request.tool)} (published: {known})")
    args = validate_arguments(manifest, {**request.args, manifest.resource.argument: request.resource})
    resource, args = resolve_call(manifest, args, config)
    remaining = request.remaining_cents
    changes = call_changes(manifest, args, resource, config)
    context = build_context(
        request.principal,
        manifest,
        resource,
        args,
        SessionState(id="policy-request"),
        request.call_count,
        unspent_headroom(config, request.principal) if remaining is None else remaining,
        changes,
    )
    verdict = snapshot.authorizer.decide(request.principal, manifest.name, resource, context)
    if request.approval is None:
        return RequestVerdict(verdict, changes=changes)
    # The enforced decision, and the whole set's when shadow files change it (what a test checks).
    waiting = [d for d in (verdict.decision, *_shadowed(verdict)) if d.effect is Effect.APPROVAL_REQUIRED]
    if not waiting:
        # The gate is never reached: the call is decided without looking at approvals.
        effect = verdict.decision.effect
        return RequestVerdict(verdict, f"the approval is not consulted: the call is `{effect}` without one", changes)
    problem = _unfit_approval(request.approval, request, waiting)
    if problem is not None:
        return RequestVerdict(verdict, problem, changes)
    with_grant = {**context, "approval": request.approval.model_dump(mode="json")}
    granted = snapshot.authorizer.decide(request.principal, manifest.name, resource, with_grant)
    return RequestVerdict(granted, changes=changes)


def unspent_headroom(config: Config, principal: Principal) -> int:
    """The ``remaining_cents`` a live call sees before anything is spent: the smallest spend cap, or uncapped."""
    caps = (config.budgets.teams.get(principal.team), config.budgets.agents.get(principal.agent))
    limits = [
        cents for cap in caps if cap is not None for cents in (cap.day_cents, cap.month_cents) if cents is not None
    ]
    return min(limits, default=UNCAPPED_CENTS)


def _unfit_approval(approval: ApprovalFacts, request: PolicyRequest, waiting: list[Decision]) -> str | None:
    """Why the gate would not let ``approval`` lift the call (its rule in ``gate._stale_grant``), or ``None``."""
    if approval.approver == request.user:
        if all(self_approvable(decision, request.principal) for decision in waiting):
            return None
        return f"an approval by `{approval.approver}`, the human the agent acts for, would not lift the call"
    needed = sorted({group for decision in waiting for group in decision.approver_groups})
    missing = [group for group in needed if group not in approval.groups]
    if not missing:
        return None
    names = ", ".join(f"`{g}`" for g in missing)
    return f"an approval from {_groups(approval)} would not lift the call: it needs {names}"


def _shadowed(verdict: Verdict) -> tuple[Decision, ...]:
    return (verdict.shadow.decision,) if verdict.shadow is not None else ()


def _groups(approval: ApprovalFacts) -> str:
    return ", ".join(f"`{g}`" for g in approval.groups) or "no group"
