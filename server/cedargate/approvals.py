"""The approval queue: pending requests a human grants or denies out of band.

An approval is bound to one agent (and the human it acts for), one tool, the content hash of
the tool's manifest and one arguments' digest; it is single-use and expires. Every state
change is one conditional ``UPDATE``, so two replicas racing on the same approval cannot both
decide or both consume it; opening a request holds a per-agent lock (``_lock_agent``) so the
pending cap and the one-request-per-call rule hold across replicas.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, and_, false, func, insert, select, text, update

from cedargate.config import ApprovalsConfig
from cedargate.errors import ApprovalError, clipped
from cedargate.store import Store
from cedargate.store.tables import admin_actions, approvals

Clock = Callable[[], datetime]

MAX_PENDING_PER_AGENT: Final = 10
"""How many pending approvals one agent may have open at once: a flood of requests would bury
the ones an approver should see, and a rate cap does not stop it (a waiting call runs nothing)."""

REFUSED_ACTION: Final = "approval_refused"
"""The ``admin_actions`` action of an attempt to decide an approval the user may not decide."""

_ACTOR_CHARACTERS: Final = 128  # ``admin_actions.actor``; an HTTP token's user claim may be longer

_AGENT_LOCK_CLASS: Final = 0x61707072  # "appr": PostgreSQL advisory locks of approval requests, keyed per agent


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
    manifest_hash: str | None = None
    """The tool's manifest the request was made under; ``None`` (rows from before it was stored) never grants."""


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
    manifest_hash: str | None = None
    """The content hash of the tool's manifest the call runs under: a grant is bound to it."""


class RequestRefused(ApprovalError):
    """``open`` opened no request: the same call was denied recently, or the agent has too many pending."""

    def __init__(self, message: str, denied: Approval | None = None) -> None:
        super().__init__(message)
        self.denied = denied


def arguments_digest(args: Mapping[str, Any]) -> str:
    """sha256 of the validated arguments' canonical JSON: what an approval is bound to."""
    body = json.dumps(dict(args), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class ApprovalQueue:
    """Approvals in the store, with the approver groups from the config."""

    def __init__(
        self, store: Store, config: ApprovalsConfig, clock: Clock = utc_now, max_pending: int = MAX_PENDING_PER_AGENT
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._max_pending = max_pending

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
        or another version of the tool's manifest is retired instead: nobody may decide a call
        by rules no longer in force. Raises ``RequestRefused`` (nothing opened) when an approver
        denied this same call within the TTL, since asking again would only bury their answer, or
        when the agent already has ``max_pending`` approvals waiting.
        """
        now = self._clock()
        with self._store.engine.begin() as connection:
            _lock_agent(connection, request.agent)  # one opener per agent at a time, on every replica
            found = self._matching(connection, request, ApprovalStatus.PENDING, approvals.c.expires_at > now)
            existing = found[0] if found else None
            if existing is not None and _same_rules(existing, request):
                return existing
            self._refuse_if_denied(connection, request, now)
            self._refuse_if_flooding(connection, request.agent, now, retiring=existing is not None)
            approval_id = self._insert(connection, request, now)
            if existing is not None:  # expires now: reads as expired, and no decision can move it
                _move_live(connection, existing.id, ApprovalStatus.PENDING, now, expires_at=now)
        return self.get(approval_id)

    def _insert(self, connection: Connection, request: ApprovalRequest, now: datetime) -> str:
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
        connection.execute(insert(approvals).values(**row))
        return approval_id

    def _refuse_if_denied(self, connection: Connection, request: ApprovalRequest, now: datetime) -> None:
        """Refuse a request an approver denied within the TTL: the agent must hear the no, not wait again."""
        since = now - timedelta(minutes=self._config.ttl_minutes)
        found = self._matching(connection, request, ApprovalStatus.DENIED, approvals.c.decided_at > since)
        if not found:
            return
        denied = found[0]
        decided_at = denied.decided_at or now
        note = f"their note: {clipped(denied.note)!r}" if denied.note else "no note given"
        until = (decided_at + timedelta(minutes=self._config.ttl_minutes)).isoformat(timespec="seconds")
        raise RequestRefused(
            f"approval `{denied.id}` for this exact call was denied by `{denied.decided_by}` at "
            f"{decided_at.isoformat(timespec='seconds')} ({note}); no new request was opened; change the request "
            f"(other arguments) or ask `{denied.decided_by}` about it; the same call can be asked for again after "
            f"{until}",
            denied,
        )

    def _refuse_if_flooding(self, connection: Connection, agent: str, now: datetime, *, retiring: bool) -> None:
        """Refuse a new request once ``agent`` has ``max_pending`` waiting (the one being retired not counted)."""
        live = and_(
            approvals.c.agent == agent,
            approvals.c.status == ApprovalStatus.PENDING.value,
            approvals.c.expires_at > now,
        )
        count, soonest = connection.execute(
            select(func.count(), func.min(approvals.c.expires_at)).select_from(approvals).where(live)
        ).one()
        if count - int(retiring) < self._max_pending:
            return
        when = soonest.isoformat(timespec="seconds") if isinstance(soonest, datetime) else "its expiry"
        raise RequestRefused(
            f"agent `{agent}` already has {count} pending approvals, the most one agent may have open at once "
            f"is {self._max_pending}; no new request was opened; ask an approver to decide the pending ones "
            f"(`cedargate approvals list` shows them) or wait until one expires (the first at {when}), then retry"
        )

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
        """Grant or deny a pending approval as ``user``; denying also withdraws a grant not yet used.

        Refuses users outside every approver group the policy named, and the requesting agent
        and the human it acts for: nobody approves their own request. A refused attempt is
        recorded in ``admin_actions`` (``approval_refused``) before the error is raised, so
        probing the queue leaves a trace.
        """
        approval = self.get(approval_id)
        refusal = _refusal(approval, user, self.groups_missing(user, approval.approver_groups))
        if refusal is not None:
            self._record_refusal(approval_id, user, approve, refusal)
            raise ApprovalError(refusal)
        movable = (ApprovalStatus.PENDING,) if approve else (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
        if approval.status not in movable:
            expected = " or ".join(s.value for s in movable)
            raise ApprovalError(f"approval `{approval_id}` is {approval.status.value}, not {expected}; nothing changed")
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        return self._settle(
            approval_id, user, status, note, movable=movable, meanwhile="was used, decided or expired meanwhile"
        )

    def _record_refusal(self, approval_id: str, user: str, approve: bool, refusal: str) -> None:
        """Write the refused attempt in its own transaction: it stands although nothing else changes."""
        verb = "approve" if approve else "deny"
        with self._store.engine.begin() as connection:
            connection.execute(
                insert(admin_actions).values(
                    at=self._clock(),
                    actor=clipped(user, _ACTOR_CHARACTERS),
                    action=REFUSED_ACTION,
                    subject=approval_id,
                    reason=f"tried to {verb}: {refusal}",
                )
            )

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
        self,
        approval_id: str,
        user: str,
        status: ApprovalStatus,
        note: str,
        *conditions: Any,
        movable: tuple[ApprovalStatus, ...] = (ApprovalStatus.PENDING,),
        meanwhile: str,
    ) -> Approval:
        """Move a live approval in ``movable`` to ``status`` as ``user`` and record who did, in one transaction."""
        now = self._clock()
        with self._store.engine.begin() as connection:
            changed = _move_live(
                connection,
                approval_id,
                movable,
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

    def find_grants(
        self, agent: str, on_behalf_of: str, tool: str, digest: str, approval_id: str | None
    ) -> tuple[Sequence[Approval], str | None]:
        """Every live grant for this exact call, newest first, or none and why a named one cannot be used.

        All of them, not the newest only: a newer grant the gate cannot accept (its approver no
        longer in the groups in force, another manifest) must not hide an older one it can.
        """
        now = self._clock()
        if approval_id is None:
            with self._store.engine.connect() as connection:
                grants = self._matching(
                    connection,
                    ApprovalKey(agent=agent, on_behalf_of=on_behalf_of, tool=tool, args_digest=digest),
                    ApprovalStatus.APPROVED,
                    approvals.c.expires_at > now,
                )
            return grants, None
        try:
            approval = self.get(approval_id)
        except ApprovalError as exc:
            return [], str(exc)
        if (approval.agent, approval.on_behalf_of, approval.tool) != (agent, on_behalf_of, tool):
            return [], f"approval `{approval_id}` was granted for another agent, user or tool"
        if approval.args_digest != digest:
            return [], f"approval `{approval_id}` was granted for other arguments"
        if approval.status is not ApprovalStatus.APPROVED:
            return [], f"approval `{approval_id}` is {approval.status.value}"
        return [approval], None

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

    def _matching(
        self, connection: Connection, call: ApprovalKey | ApprovalRequest, status: ApprovalStatus, *conditions: Any
    ) -> Sequence[Approval]:
        """Approvals in ``status`` for the same agent, human, tool and arguments, newest first."""
        query = (
            select(approvals)
            .where(
                and_(
                    approvals.c.agent == call.agent,
                    approvals.c.on_behalf_of == call.on_behalf_of,
                    approvals.c.tool == call.tool,
                    approvals.c.args_digest == call.args_digest,
                    approvals.c.status == status.value,
                    *conditions,
                )
            )
            .order_by(approvals.c.created_at.desc(), approvals.c.id)
        )
        return [self._model(row) for row in connection.execute(query).mappings().all()]

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


class ApprovalKey(BaseModel):
    """What binds an approval to one call (besides the manifest, which the gate checks)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    on_behalf_of: str
    tool: str
    args_digest: str


def _refusal(approval: Approval, user: str, missing: Sequence[str]) -> str | None:
    """Why ``user`` may not decide ``approval`` (given the approver groups they are not in), or ``None``."""
    if user in (approval.agent, approval.on_behalf_of):
        return (
            f"`{user}` may not decide approval `{approval.id}`: it was requested by agent `{approval.agent}` "
            f"acting for `{approval.on_behalf_of}`, and nobody approves their own request"
        )
    if missing:
        names = ", ".join(f"`{g}`" for g in missing)
        return (
            f"`{user}` may not decide approval `{approval.id}`: not a member of {names} "
            "(see `[approvals.groups]` in the config)"
        )
    return None


def _same_rules(approval: Approval, request: ApprovalRequest) -> bool:
    """Whether ``approval`` asks for the decision ``request`` needs: same groups, self-approval alike, same manifest."""
    return (approval.approver_groups, approval.self_approvable, approval.manifest_hash) == (
        request.approver_groups,
        request.self_approvable,
        request.manifest_hash,
    )


def _lock_agent(connection: Connection, agent: str) -> None:
    """Serialize this transaction with every other one opening a request for ``agent``, on any replica.

    PostgreSQL: a transaction-scoped advisory lock keyed by the agent. SQLite: a write that
    matches no row starts the write transaction, which SQLite allows one at a time, so what
    the transaction reads next is what it writes against.
    """
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(agent.encode()).digest()[:4], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:kind, :key)"), {"kind": _AGENT_LOCK_CLASS, "key": key})
    else:
        connection.execute(update(approvals).where(false()).values(status=approvals.c.status))


def _move_live(
    connection: Connection,
    approval_id: str,
    current: ApprovalStatus | tuple[ApprovalStatus, ...],
    now: datetime,
    *extra: Any,
    **values: Any,
) -> bool:
    """Change an unexpired approval that is still in ``current``; ``False`` when another call got there first.

    The status check and the update are one statement, so two replicas can never both move it.
    """
    statuses = [s.value for s in (current if isinstance(current, tuple) else (current,))]
    changed = connection.execute(
        update(approvals)
        .where(
            and_(approvals.c.id == approval_id, approvals.c.status.in_(statuses), approvals.c.expires_at > now, *extra)
        )
        .values(**values)
    ).rowcount
    return bool(changed == 1)
