"""A request as a policy author writes it (tool, agent, resource, arguments), decided offline.

``policy test`` and ``policy explain`` build the same principal, resource and context the
pipeline builds for a live call (``validate_arguments``, ``resolve_call``, ``build_context``),
so a case that passes here is decided the same way when served.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cedargate.config import Config
from cedargate.errors import ToolInputError, quoted
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

    @property
    def principal(self) -> Principal:
        return Principal(agent=self.agent, team=self.team, on_behalf_of=self.user, mode=self.mode, task=self.task)

    def summary(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.args.items()))
        who = f"agent `{self.agent}` (team `{self.team}`, for `{self.user}`, {self.mode})"
        return f"{who} calls `{self.tool}` on `{self.resource}`" + (f" with {args}" if args else "")


def decide_request(request: PolicyRequest, snapshot: Snapshot, config: Config) -> Verdict:
    """The verdict the pipeline would reach for ``request``; bad input raises ``ToolInputError``."""
    manifest = snapshot.catalog.get(request.tool)
    if manifest is None:
        known = ", ".join(f"`{t}`" for t in snapshot.catalog.tools)
        raise ToolInputError(f"unknown tool {quoted(request.tool)} (published: {known})")
    args = validate_arguments(manifest, {**request.args, manifest.resource.argument: request.resource})
    resource, args = resolve_call(manifest, args, config)
    context = build_context(
        request.principal, manifest, resource, args, SessionState(id="policy-request"), request.call_count
    )
    if request.approval is not None:
        context["approval"] = request.approval.model_dump(mode="json")
    return snapshot.authorizer.decide(request.principal, manifest.name, resource, context)
