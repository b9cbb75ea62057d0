"""Step 6, budget: team and agent spend and rate caps, checked before running, charged after.

Seam for the governance-state issue: no caps are configured yet, so ``check`` admits every
call and ``charge`` records nothing. The pipeline already calls both at the right places.
"""

from __future__ import annotations

from cedargate.identity import Principal
from cedargate.manifest import ToolManifest


class Budget:
    """Spend and rate caps; this version has none and admits every call."""

    def check(self, principal: Principal, manifest: ToolManifest) -> None:
        """Raise ``BudgetExceeded`` when a cap would be passed (never, without caps)."""

    def charge(self, principal: Principal, manifest: ToolManifest) -> None:
        """Record the call's cost estimate against the caps (nothing to record without caps)."""
