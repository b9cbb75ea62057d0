"""``policy explain``: which policies decide a request, with their reasons, and which errored.

Decides against the policies on disk and the config's repositories and accounts, exactly as
the server would (shadow files and environments included).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cedargate.config import Config
from cedargate.decision import Decision, DeterminingPolicy, Effect
from cedargate.handlers import HandlerRegistry
from cedargate.policy_request import PolicyRequest, decide_request
from cedargate.snapshot import build_snapshot


class Explanation(BaseModel):
    """The decision on one request, the policies that decided it, and any that errored."""

    request: dict[str, Any]
    effect: Effect
    enforced: bool
    policies: tuple[DeterminingPolicy, ...]
    errors: tuple[str, ...]
    shadow: dict[str, Any] | None = None
    approval_problem: str | None = None
    """Why the approval asked for (``--approved-by``) does not lift the call, as at the live gate."""
    changes: dict[str, Any]
    """``context.changes`` as the policies saw it: the paths the call changes and their path classes."""
    message: str


def explain_request(request: PolicyRequest, config: Config, registry: HandlerRegistry) -> Explanation:
    decided = decide_request(request, build_snapshot(config, registry), config)
    verdict = decided.verdict
    decision: Decision = verdict.decision
    return Explanation(
        request=request.model_dump(mode="json", exclude_none=True),
        effect=decision.effect,
        enforced=verdict.enforced,
        policies=decision.policies,
        errors=decision.errors,
        shadow=verdict.shadow.model_dump(mode="json") if verdict.shadow is not None else None,
        approval_problem=decided.approval_problem,
        changes=decided.changes.for_policy(),
        message=decision.explain(),
    )


def render(explanation: Explanation) -> str:
    """Lines a policy author reads: the decision, then one line per policy with its reason."""
    lines = [
        f"decision: {explanation.effect}" + ("" if explanation.enforced else " (shadow environment: not enforced)")
    ]
    if explanation.policies:
        lines.append("determined by:")
        for p in explanation.policies:
            approval = f" [lifted by an approval from `{p.approval_group}`]" if p.approval_group else ""
            lines.append(f"  {p.id} ({p.file}:{p.line}): {p.reason or 'no @reason given'}{approval}")
    elif not explanation.errors and explanation.effect is Effect.DENY:
        lines.append("determined by: no policy permits this request (default deny)")
    if explanation.changes["paths"]:
        paths = ", ".join(f"`{path}`" for path in explanation.changes["paths"])
        classes = ", ".join(f"`{name}`" for name in explanation.changes["classes"]) or "none"
        outside = "; some in no class" if explanation.changes["classes"] and explanation.changes["unclassified"] else ""
        lines.append(f"changes: {paths} (path classes: {classes}{outside})")
    if explanation.approval_problem is not None:
        lines.append(f"approval: {explanation.approval_problem}")
    if explanation.errors:
        lines.append("errored (cedargate denies when a policy fails to evaluate):")
        lines.extend(f"  {e}" for e in explanation.errors)
    if explanation.shadow is not None:
        shadow = explanation.shadow
        ids = ", ".join(p["id"] for p in shadow["decision"]["policies"]) or "no policy"
        lines.append(f"shadow ({shadow['scope']}): would {shadow['would']} by {ids}")
    return "\n".join(lines)
