"""Step 5, gate: approval-required decisions wait for a human.

Seam for the governance-state issue. Until approvals are stored, an approval-required
decision is final for this call: nothing runs, the agent is told who could approve, and the
audit event records ``approval_required``.
"""

from __future__ import annotations

from cedargate.decision import Decision, Effect


def needs_approval(decision: Decision) -> bool:
    """True when the call must wait for an approval it does not have."""
    return decision.effect is Effect.APPROVAL_REQUIRED
