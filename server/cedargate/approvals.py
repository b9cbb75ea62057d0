"""The approval queue: pending requests a human grants or denies out of band.

An approval is bound to one agent (and the human it acts for), one tool and one arguments'
digest; it is single-use and expires. Every state change is one conditional ``UPDATE``, so
two replicas racing on the same approval cannot both decide or both consume it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, and_, insert, select, update

from cedargate.config import ApprovalsConfig
from cedargate.errors import ApprovalError
from cedargate.store import Store
from cedargate.store.tables import admin_actions, approvals

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CONSUMED = "consumed"
    EXPIRED = "expired"
    """Never stored: a pending or approved row past ``expires_at`` reads as expired."""


class Approval(BaseModel):
    """One approval request as approvers and the audit trail see it."""

    model_config = ConfigDict(frozen=True)

    id: str
    tool: str
    agent: str
    team: str
    on_behalf_of: str
    task: str
    args_digest: str
    arguments: dict[str, Any]
    resource: str
    environment: str
    policies: list[str]
    reason: str
    approver_groups: list[str]
    status: ApprovalStatus
    created_at: datetime
    expires_at: datetime
    request_event_id: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    consumed_event_id: str | None = None
    consumed_at: datetime | None = None
    self_approvable: bool = False


class ApprovalRequest(BaseModel):
    """What the gate knows when a call needs an approval it does not have."""

    model_config = ConfigDict(frozen=True)

    tool: str
    agent: str
    team: str
    on_behalf_of: str
    task: str
    arguments: dict[str, Any]
    args_digest: str
    resource: str
    environment: str
    policies: list[str]
    reason: str
    approver_groups: list[str]
    request_event_id: str
    self_approvable: bool = False
    """Policy lets the interactive human approve it themselves (through elicitation, never the CLI)."""


def arguments_digest(args: Mapping[str, Any]) -> str:
    """sha256 of the validated arguments' canonical JSON: what an approval is bound to."""
    body = json.dumps(dict(args), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class ApprovalQueue:
    """Approvals in the store, with the approver groups from the config."""

    def __init__(self, store: Store, config: ApprovalsConfig, clock: Clock = utc_now) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    def groups_of(self, user: str) -> list[str]:
        return sorted(group for group, users in self._config.groups.items() if user in users)

    def groups_missing(self, user: str, groups: Sequence[str]) -> list[str]:
        """The groups in ``groups`` the config does not put ``user`` in (empty: ``user`` may decide for them)."""
        return [g for g in groups if user not in self._config.groups.get(g, ())]

    def can_be_decided(self, approval: Approval) -> bool:
        """Whether the config names anyone who may decide ``approval`` (see ``decide``)."""
        members = [set(self._config.groups.get(group, ())) for group in approval.approver_groups]
        eligible = set.intersection(*members) if members else set()
        return bool(eligible - {approval.agent, approval.on_behalf_of})

    def context_for(self, grant: Approval) -> dict[str, Any]:
        """``context.approval`` for a granted approval: who approved, and every group they belong to."""
        approver = grant.decided_by or ""
        return {"granted": True, "approver": approver, "groups": self.groups_of(approver)}

    def open(self, request: ApprovalRequest) -> Approval:
        """A pending approval for this request; an open one for the same call is reused, not duplicated.

        One opened under other policies (other approver groups, or self-approval allowed or not)
        is retired instead: nobody may decide a call by rules no longer in force.
        """
        now = self._clock()
        existing = self._find(request.agent, request.on_behalf_of, request.tool, request.args_digest, "pending", now)
        if existing is not None and _same_rules(existing, request):
            return existing
        approval_id = "apr_" + secrets.token_hex(8)
        row = {
            **request.model_dump(exclude={"arguments", "policies", "approver_groups"}),
            "id": approval_id,
            "arguments": json.dumps(request.arguments, sort_keys=True, default=str),
            "policies": json.dumps(request.policies),
            "approver_group": ",".join(request.approver_groups),
            "status": ApprovalStatus.PENDING.value,
            "created_at": now,
            "expires_at": now + timedelta(minutes=self._config.ttl_minutes),
        }
        with self._store.engine.begin() as connection:
            if existing is not None:  # expires now: reads as expired, and no decision can move it
                _move_live(connection, existing.id, ApprovalStatus.PENDING, now, expires_at=now)
            connection.execute(insert(approvals).values(**row))
        return self.get(approval_id)

    def get(self, approval_id: str) -> Approval:
        with self._store.engine.connect() as connection:
            row = connection.execute(select(approvals).where(approvals.c.id == approval_id)).mappings().first()
        if row is None:
            raise ApprovalError(f"no approval `{approval_id}`: run `cedargate approvals list` to see the open ones")
        return self._model(row)

    def list(self, status: ApprovalStatus | None = None) -> list[Approval]:
        """Approvals newest first; ``status`` filters on the status as read now (expiry included)."""
        with self._store.engine.connect() as connection:
            rows = connection.execute(select(approvals).order_by(approvals.c.created_at.desc())).mappings().all()
        found = [self._model(row) for row in rows]
        return [a for a in found if status is None or a.status is status]

    def decide(self, approval_id: str, user: str, *, approve: bool, note: str = "") -> Approval:
        """Grant or deny a pending approval as ``user``.

        Refuses users outside every approver group the policy named, and the requesting agent
        and the human it acts for: nobody approves their own request.
        """
        approval = self.get(approval_id)
        if user in (approval.agent, approval.on_behalf_of):
            raise ApprovalError(
                f"`{user}` may not decide approval `{approval_id}`: it was requested by agent `{approval.agent}` "
                f"acting for `{approval.on_behalf_of}`, and nobody approves their own request"
            )
        missing = self.groups_missing(user, approval.approver_groups)
        if missing:
            names = ", ".join(f"`{g}`" for g in missing)
            raise ApprovalError(
                f"`{user}` may not decide approval `{approval_id}`: not a member of {names} "
                "(see `[approvals.groups]` in the config)"
            )
        if approval.status is not ApprovalStatus.PENDING:
            raise ApprovalError(f"approval `{approval_id}` is {approval.status.value}, not pending")
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        return self._settle(approval_id, user, status, note, meanwhile="was decided or expired meanwhile")

    def self_approve(self, approval_id: str, agent: str, user: str) -> Approval:
        """Grant a pending approval on the word of the human the agent acts for.

        Only for approvals the policy marked ``@self_approval`` and opened for an interactive
        principal, and only by that principal's own human: the server calls this after the
        human answered an elicitation, never on a client's say-so alone. The flag is the one of
        the latest call's decision (``open`` retires approvals opened under other rules), and the
        gate judges the grant again against the decision in force when the call uses it.
        """
        approval = self.get(approval_id)
        if not approval.self_approvable or (approval.agent, approval.on_behalf_of) != (agent, user):
            raise ApprovalError(f"approval `{approval_id}` cannot be approved by `{user}` themselves")
        return self._settle(
            approval_id,
            user,
            ApprovalStatus.APPROVED,
            "self-approved",
            approvals.c.self_approvable.is_(True),
            meanwhile="is not pending",
        )

    def _settle(
        self, approval_id: str, user: str, status: ApprovalStatus, note: str, *conditions: Any, meanwhile: str
    ) -> Approval:
        """Move a pending approval to ``status`` as ``user`` and record who did, in one transaction."""
        now = self._clock()
        with self._store.engine.begin() as connection:
            changed = _move_live(
                connection,
                approval_id,
                ApprovalStatus.PENDING,
                now,
                *conditions,
                status=status.value,
                decided_by=user,
                decided_at=now,
                note=note or None,
            )
            if changed:
                connection.execute(
                    insert(admin_actions).values(
                        at=now, actor=user, action=f"approval_{status.value}", subject=approval_id, reason=note
                    )
                )
        if not changed:
            raise ApprovalError(f"approval `{approval_id}` {meanwhile}; nothing changed")
        return self.get(approval_id)

    def find_grant(
        self, agent: str, on_behalf_of: str, tool: str, digest: str, approval_id: str | None
    ) -> tuple[Approval | None, str | None]:
        """The usable grant for this exact call, or ``None`` and why a named one cannot be used."""
        now = self._clock()
        if approval_id is None:
            return self._find(agent, on_behalf_of, tool, digest, "approved", now), None
        try:
            approval = self.get(approval_id)
        except ApprovalError as exc:
            return None, str(exc)
        if (approval.agent, approval.on_behalf_of, approval.tool) != (agent, on_behalf_of, tool):
            return None, f"approval `{approval_id}` was granted for another agent, user or tool"
        if approval.args_digest != digest:
            return None, f"approval `{approval_id}` was granted for other arguments"
        if approval.status is not ApprovalStatus.APPROVED:
            return None, f"approval `{approval_id}` is {approval.status.value}"
        return approval, None

    def consume(self, approval_id: str, event_id: str) -> bool:
        """Use a grant once; ``False`` when another call used it first or it expired meanwhile."""
        now = self._clock()
        with self._store.engine.begin() as connection:
            return _move_live(
                connection,
                approval_id,
                ApprovalStatus.APPROVED,
                now,
                status=ApprovalStatus.CONSUMED.value,
                consumed_event_id=event_id,
                consumed_at=now,
            )

    def restore(self, approval_id: str, event_id: str) -> None:
        """Give back a grant this call consumed but could not use (a budget cap stopped it first)."""
        with self._store.engine.begin() as connection:
            connection.execute(
                update(approvals)
                .where(
                    and_(
                        approvals.c.id == approval_id,
                        approvals.c.status == ApprovalStatus.CONSUMED.value,
                        approvals.c.consumed_event_id == event_id,
                    )
                )
                .values(status=ApprovalStatus.APPROVED.value, consumed_event_id=None, consumed_at=None)
            )

    def _find(
        self, agent: str, on_behalf_of: str, tool: str, digest: str, status: str, now: datetime
    ) -> Approval | None:
        query = (
            select(approvals)
            .where(
                and_(
                    approvals.c.agent == agent,
                    approvals.c.on_behalf_of == on_behalf_of,
                    approvals.c.tool == tool,
                    approvals.c.args_digest == digest,
                    approvals.c.status == status,
                    approvals.c.expires_at > now,
                )
            )
            .order_by(approvals.c.created_at.desc())
        )
        with self._store.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else self._model(row)

    def _model(self, row: Any) -> Approval:
        data = dict(row)
        status = ApprovalStatus(data["status"])
        if status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED) and data["expires_at"] <= self._clock():
            status = ApprovalStatus.EXPIRED
        return Approval(
            **{k: v for k, v in data.items() if k not in ("arguments", "policies", "approver_group", "status")},
            arguments=json.loads(data["arguments"]),
            policies=json.loads(data["policies"]),
            approver_groups=[g for g in data["approver_group"].split(",") if g],
            status=status,
        )


def _same_rules(approval: Approval, request: ApprovalRequest) -> bool:
    """Whether ``approval`` asks for the decision ``request`` needs: the same groups, self-approval alike."""
    return (approval.approver_groups, approval.self_approvable) == (request.approver_groups, request.self_approvable)


def _move_live(
    connection: Connection, approval_id: str, current: ApprovalStatus, now: datetime, *extra: Any, **values: Any
) -> bool:
    """Change an unexpired approval that is still in ``current``; ``False`` when another call got there first.

    The status check and the update are one statement, so two replicas can never both move it.
    """
    changed = connection.execute(
        update(approvals)
        .where(
            and_(
                approvals.c.id == approval_id, approvals.c.status == current.value, approvals.c.expires_at > now, *extra
            )
        )
        .values(**values)
    ).rowcount
    return bool(changed == 1)
