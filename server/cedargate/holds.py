"""Revocation and freeze: holds an operator puts on an agent or an environment, shared by every replica.

A revoked agent is refused on its next call, whatever the tool; a frozen environment runs
only read-risk tools. Both live in the store and are checked on every call, so they take
effect on every replica without a restart: on PostgreSQL by a read per call, on SQLite by
re-reading the table whenever the store's change token says any process committed since the
last read. Each change is recorded in ``admin_actions`` with who made it and why. Revoking
an agent also expires its pending and granted-but-unused approvals, so nothing asked before
the revocation can be granted during it or used after ``reinstate``.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Connection, RowMapping, and_, bindparam, delete, insert, select, update

from cedargate.approvals import ApprovalStatus, Clock, utc_now
from cedargate.errors import CedargateError
from cedargate.identity import Principal
from cedargate.risk import Risk
from cedargate.store import Store
from cedargate.store.guard import store_guarded
from cedargate.store.tables import admin_actions, approvals, revocations


class HoldKind(StrEnum):
    AGENT = "agent"
    """A revoked agent."""
    ENVIRONMENT = "environment"
    """A frozen environment."""


# Built once: they run on every call (or every change), and building them cost more than running them.
_HOLDS_ON = select(revocations).where(
    ((revocations.c.kind == HoldKind.AGENT.value) & (revocations.c.subject == bindparam("h_agent")))
    | ((revocations.c.kind == HoldKind.ENVIRONMENT.value) & (revocations.c.subject == bindparam("h_environment")))
)
_ALL_HOLDS = select(revocations)


class Hold(BaseModel):
    kind: HoldKind
    subject: str
    by_user: str
    at: datetime
    reason: str


class Holds:
    """Holds in the store; without a store there are none."""

    def __init__(self, store: Store | None = None, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: tuple[Hashable, dict[tuple[str, str], RowMapping]] | None = None
        """Every hold, and the store's change token from just before they were read."""

    @store_guarded("the revocation check")
    def refusal(self, principal: Principal, environment: str, risk: Risk) -> tuple[HoldKind, str] | None:
        """Why this call may not run because of a hold, or ``None``; checked on every call."""
        if self._store is None:
            return None
        rows = self._rows_for(self._store, principal.agent, environment)
        for row in rows:
            if row["kind"] == HoldKind.AGENT.value:
                return HoldKind.AGENT, (
                    f"agent `{principal.agent}` was revoked by `{row['by_user']}` ({row['reason']}); nothing ran; "
                    "an operator can run `cedargate reinstate agent` to undo it"
                )
        for row in rows:
            if not risk.read_only:
                return HoldKind.ENVIRONMENT, (
                    f"environment `{environment}` is frozen by `{row['by_user']}` ({row['reason']}): only read tools "
                    f"run there; nothing ran"
                )
        return None

    def _rows_for(self, store: Store, agent: str, environment: str) -> Sequence[RowMapping]:
        token = store.change_token()
        if token is None:  # no cheap way to know nothing changed: read this call's holds
            with store.engine.connect() as connection:
                params = {"h_agent": agent, "h_environment": environment}
                return connection.execute(_HOLDS_ON, params).mappings().all()
        with self._lock:
            seen = self._seen
        if seen is None or seen[0] != token:
            with store.engine.connect() as connection:
                rows = connection.execute(_ALL_HOLDS).mappings().all()
            seen = (token, {(row["kind"], row["subject"]): row for row in rows})
            with self._lock:
                self._seen = seen
        held = seen[1]
        return [row for key in _keys(agent, environment) if (row := held.get(key)) is not None]

    def put(self, kind: HoldKind, subject: str, user: str, reason: str) -> int:
        """Hold ``subject``; one already held keeps its record (who, when, why) and is refused.

        Revoking an agent also retires its open approvals (see ``_retire_approvals``) in the same
        transaction; returns how many it retired (always 0 for an environment).
        """
        store = self._require()
        with store.engine.begin() as connection:
            held = connection.execute(select(revocations).where(_key(kind, subject))).mappings().first()
            if held is not None:
                raise CedargateError(
                    f"{kind.value} `{subject}` is already {_HELD[kind]} (by `{held['by_user']}` at "
                    f"{held['at'].isoformat(timespec='seconds')}: {held['reason']}); nothing changed"
                )
            now = self._clock()  # one action, one time: the hold and its record say the same
            connection.execute(
                insert(revocations).values(kind=kind.value, subject=subject, by_user=user, at=now, reason=reason)
            )
            self._record(connection, now, user, _PUT[kind], subject, reason)
            return _retire_approvals(connection, subject, now) if kind is HoldKind.AGENT else 0

    def lift(self, kind: HoldKind, subject: str, user: str, reason: str) -> None:
        store = self._require()
        with store.engine.begin() as connection:
            removed = connection.execute(delete(revocations).where(_key(kind, subject))).rowcount
            if removed != 1:
                raise CedargateError(f"{kind.value} `{subject}` has no hold to lift; `cedargate holds` lists them")
            self._record(connection, self._clock(), user, _LIFT[kind], subject, reason)

    def list(self) -> list[Hold]:
        store = self._require()
        with store.engine.connect() as connection:
            rows = connection.execute(select(revocations).order_by(revocations.c.at)).mappings().all()
        return [
            Hold(
                kind=HoldKind(r["kind"]),
                subject=r["subject"],
                by_user=r["by_user"],
                at=r["at"],
                reason=r["reason"],
            )
            for r in rows
        ]

    def _record(self, connection: Connection, at: datetime, user: str, action: str, subject: str, reason: str) -> None:
        connection.execute(
            insert(admin_actions).values(at=at, actor=user, action=action, subject=subject, reason=reason)
        )

    def _require(self) -> Store:
        if self._store is None:
            raise CedargateError("no governance store configured")
        return self._store


_PUT = {HoldKind.AGENT: "revoke_agent", HoldKind.ENVIRONMENT: "freeze_environment"}
_LIFT = {HoldKind.AGENT: "reinstate_agent", HoldKind.ENVIRONMENT: "unfreeze_environment"}
_HELD = {HoldKind.AGENT: "revoked", HoldKind.ENVIRONMENT: "frozen"}


def _keys(agent: str, environment: str) -> tuple[tuple[str, str], ...]:
    return ((HoldKind.AGENT.value, agent), (HoldKind.ENVIRONMENT.value, environment))


def _key(kind: HoldKind, subject: str) -> ColumnElement[bool]:
    return and_(revocations.c.kind == kind.value, revocations.c.subject == subject)


def _retire_approvals(connection: Connection, agent: str, now: datetime) -> int:
    """Expire ``agent``'s pending and granted-but-unused approvals now; how many there were.

    A revocation must leave nothing of the agent's that an approver could still grant or a
    later call could use: after ``reinstate``, every risky call asks afresh. The status itself
    moves to ``expired``, not only ``expires_at``: every decision and use requires ``pending``
    or ``approved`` in the same statement, so a replica whose clock lags this one's cannot
    still take them for live. ``expires_at`` becomes now, when they stopped being usable.
    """
    live = (ApprovalStatus.PENDING.value, ApprovalStatus.APPROVED.value)
    retired = connection.execute(
        update(approvals)
        .where(and_(approvals.c.agent == agent, approvals.c.status.in_(live), approvals.c.expires_at > now))
        .values(status=ApprovalStatus.EXPIRED.value, expires_at=now)
    ).rowcount
    return int(retired)
