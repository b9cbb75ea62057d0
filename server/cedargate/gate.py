"""Step 5, gate: approval-required decisions wait for a human, out of band.

When Cedar says a call needs an approval, the gate looks for grants bound to this agent,
tool and arguments' digest (or the approval id the call names). A grant counts only if it was
asked for under the tool's manifest as it is now, and its approver may decide under the
policies in force now (every group they name, or self-approval they still allow): manifests
and policies reload while approvals wait. The first grant that counts lets Cedar decide again
with ``context.approval`` filled in and, if that allows, the grant is consumed (once,
atomically) and the call runs. Without one, a pending approval is opened and the call stops:
nothing ran, and the agent learns the id and who may approve, or why no request was opened
(an approver denied this same call recently, or the agent has too many waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cedargate.approvals import Approval, ApprovalQueue, ApprovalRequest, RequestRefused, arguments_digest
from cedargate.audit.event import ApprovalLink
from cedargate.decision import Decision, Effect
from cedargate.identity import Principal
from cedargate.manifest import ToolManifest
from cedargate.redact import arguments_for_audit
from cedargate.resolve import Resource
from cedargate.store.guard import store_guarded

Reauthorize = Callable[[Mapping[str, Any]], Decision]


def needs_approval(decision: Decision) -> bool:
    """True when the call must wait for an approval it does not have."""
    return decision.effect is Effect.APPROVAL_REQUIRED


def self_approvable(decision: Decision, principal: Principal) -> bool:
    """Whether the human at the keyboard may approve this call themselves, by the decision in force now."""
    return decision.self_approvable and principal.mode == "interactive"


@dataclass(frozen=True)
class GateTicket:
    """The call as the gate sees it."""

    principal: Principal
    manifest: ToolManifest
    args: Mapping[str, Any]
    resource: Resource
    event_id: str
    approval_id: str | None = None


@dataclass(frozen=True)
class GateResult:
    """The decision that stands after the gate, the approval it involved, and why the call waits (if it does)."""

    decision: Decision
    approval: ApprovalLink | None = None
    waiting: str | None = None


class Gate:
    """The approval step; without a queue, approval-required is final (nothing can be approved)."""

    def __init__(self, queue: ApprovalQueue | None = None) -> None:
        self._queue = queue

    @store_guarded("the approval gate")
    def admit(self, ticket: GateTicket, decision: Decision, reauthorize: Reauthorize) -> GateResult:
        """The decision to act on; fails closed: any doubt leaves the call waiting or denied."""
        if not needs_approval(decision):
            return GateResult(decision)
        if self._queue is None:
            return GateResult(decision, waiting=decision.explain())
        p = ticket.principal
        digest = arguments_digest(ticket.args)
        grants, problem = self._queue.find_grants(
            p.agent, p.on_behalf_of, ticket.manifest.name, digest, ticket.approval_id
        )
        for grant in grants:  # newest first; the first the gate accepts is used, a refused one hides none
            unusable = _changed_tool(grant, ticket.manifest) or _stale_grant(self._queue, grant, decision, p)
            if unusable is not None:
                problem = problem or unusable
                continue
            approved = reauthorize(self._queue.context_for(grant))
            link = ApprovalLink(
                id=grant.id, status="granted", approver=grant.decided_by, request_event_id=grant.request_event_id
            )
            if approved.allowed:
                if self._queue.consume(grant.id, ticket.event_id):
                    return GateResult(approved, link)
                problem = problem or f"approval `{grant.id}` was used by another call, withdrawn or expired"
            elif not needs_approval(approved):
                return GateResult(approved, link)
        try:
            pending = self._queue.open(self._request(ticket, decision, digest))
        except RequestRefused as exc:
            denied = exc.denied
            refused: ApprovalLink | None = None
            if denied is not None:
                refused = ApprovalLink(
                    id=denied.id, status="denied", approver=denied.decided_by, request_event_id=denied.request_event_id
                )
            prefix = f"{problem}; " if problem else ""
            # Nothing waits: the call needs an approval no request is open for (one was denied, or too many wait).
            held = f"{prefix}call {decision.explain(waiting=False)}; nothing ran, and no request was opened: {exc}"
            return GateResult(decision, refused, waiting=held)
        # The human at the keyboard may approve by elicitation where policy allows; else the config's approvers.
        decidable = self_approvable(decision, p) or self._queue.can_be_decided(pending)
        return GateResult(
            decision,
            ApprovalLink(
                id=pending.id,
                status="pending",
                request_event_id=pending.request_event_id,
                self_approvable=self_approvable(decision, p),
            ),
            waiting=self._waiting_message(pending, decision, problem, decidable),
        )

    @store_guarded("the approval gate")
    def give_back(self, link: ApprovalLink | None, event_id: str) -> None:
        """Undo this call's use of a grant when a later step stopped the call before it ran."""
        if self._queue is not None and link is not None and link.status == "granted":
            self._queue.restore(link.id, event_id)

    @staticmethod
    def _request(ticket: GateTicket, decision: Decision, digest: str) -> ApprovalRequest:
        p = ticket.principal
        return ApprovalRequest(
            tool=ticket.manifest.name,
            agent=p.agent,
            team=p.team,
            on_behalf_of=p.on_behalf_of,
            task=p.task,
            # Shown to approvers without the manifest's sensitive fields; the digest binds the real arguments.
            arguments=arguments_for_audit(dict(ticket.args), ticket.manifest.sensitive_fields),
            args_digest=digest,
            resource=f"{ticket.resource.ref.type}::{ticket.resource.ref.id}",
            environment=ticket.resource.environment,
            policies=[policy.id for policy in decision.policies],
            reason="; ".join(policy.reason or policy.id for policy in decision.policies),
            approver_groups=list(decision.approver_groups),
            request_event_id=ticket.event_id,
            self_approvable=self_approvable(decision, p),
            manifest_hash=ticket.manifest.content_hash,
        )

    @staticmethod
    def _waiting_message(pending: Approval, decision: Decision, problem: str | None, decidable: bool) -> str:
        who = ", ".join(f"`{g}`" for g in pending.approver_groups)
        prefix = f"{problem}; " if problem else ""
        opened = f"{prefix}call {decision.explain()}; nothing ran. Approval `{pending.id}` is pending"
        if not decidable:
            return (
                f"{opened}, but nobody can decide it: `[approvals.groups]` in the config names no member of {who} "
                f"other than `{pending.agent}` and `{pending.on_behalf_of}`; ask an admin to add one and restart "
                "the server (a running server reads `[approvals.groups]` only at start), then retry with the same "
                "arguments"
            )
        return (
            f"{opened}: a member of {who} "
            f"other than `{pending.agent}` and `{pending.on_behalf_of}` can run "
            f"`cedargate approvals approve {pending.id} --as USER`; then retry with the same arguments "
            f"(before {pending.expires_at.isoformat(timespec='seconds')})"
        )


def _changed_tool(grant: Approval, manifest: ToolManifest) -> str | None:
    """Why a grant asked for under another version of the tool's manifest does not lift this call, or ``None``.

    The approver judged the tool as it was then; a reload may have changed what it does.
    """
    if grant.manifest_hash == manifest.content_hash:
        return None
    if not grant.manifest_hash:
        return (
            f"approval `{grant.id}` for tool `{manifest.name}` was granted before cedargate recorded which "
            "version of a tool an approver saw, so it does not apply; a new request must be approved"
        )
    return (
        f"approval `{grant.id}` was granted for tool `{manifest.name}` under manifest {grant.manifest_hash[:12]}, "
        f"and the tool changed since (manifest {manifest.content_hash[:12]} now), so it does not apply; "
        "a new request must be approved"
    )


def _stale_grant(queue: ApprovalQueue, grant: Approval, decision: Decision, principal: Principal) -> str | None:
    """Why a grant no longer lifts this call under the policies in force, or ``None`` when it does.

    A grant outlives policy reloads, so who approved it is judged against the decision now,
    never against the groups or the self-approval flag stored when it was opened.
    """
    approver = grant.decided_by or ""
    if approver == principal.on_behalf_of:  # only ``self_approve`` records the requester's own human
        if self_approvable(decision, principal):
            return None
        return (
            f"approval `{grant.id}` was approved by `{approver}` themselves, "
            "which the policies in force no longer allow"
        )
    missing = queue.groups_missing(approver, decision.approver_groups)
    if not missing:
        return None
    names = ", ".join(f"`{g}`" for g in missing)
    return f"approval `{grant.id}` was granted by `{approver}`, who is not in {names} as the policies in force ask"
