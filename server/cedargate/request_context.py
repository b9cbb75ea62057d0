"""The Cedar ``context`` of a call: environment, risk, mode, on-behalf-of, task, session, arguments,
and the repository paths it changes (``change_paths``).

Only arguments the schema can type are passed (see ``cedar_schema.args_record``); their
values are exactly what the validated call carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cedargate.cedar_schema import visible_arg_names
from cedargate.change_paths import NO_CHANGES, Changes
from cedargate.identity import Principal
from cedargate.manifest import ToolManifest
from cedargate.resolve import Resource
from cedargate.session import SessionState

NO_APPROVAL: Mapping[str, Any] = {"granted": False, "approver": "", "groups": []}


def build_context(
    principal: Principal,
    manifest: ToolManifest,
    resource: Resource,
    args: Mapping[str, Any],
    session: SessionState,
    call_number: int,
    remaining_cents: int = 0,
    changes: Changes = NO_CHANGES,
) -> dict[str, Any]:
    """The context Cedar sees; ``approval`` starts ungranted (the gate fills it from a grant)."""
    visible = visible_arg_names(manifest)
    return {
        "environment": resource.environment,
        "risk": manifest.risk.value,
        "mode": principal.mode,
        "on_behalf_of": principal.on_behalf_of,
        "task": principal.task,
        "session": {"id": session.id, "call_count": call_number, "repositories": list(session.repositories)},
        "args": {name: value for name, value in args.items() if name in visible},
        "approval": dict(NO_APPROVAL),
        "budget": {"remaining_cents": remaining_cents},
        "changes": changes.for_policy(),
    }
