"""Step 6, budget: team and agent spend caps (per UTC day and month) and call-rate caps (per minute).

``check`` reserves the manifest's ``cost_cents`` and counts the call before the handler runs;
``charge`` records the spend in the ledger after it succeeded; ``release`` gives the cents
back when it failed. Reserving is one transaction of conditional ``UPDATE``s taken in a fixed
order, so concurrent calls on any number of replicas sharing one database never pass a cap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from cedargate.approvals import Clock, utc_now
from cedargate.budget_windows import Period, Window, period_of
from cedargate.config import BudgetsConfig, CapsConfig
from cedargate.errors import BudgetExceeded
from cedargate.identity import Principal
from cedargate.manifest import ToolManifest
from cedargate.store import Store
from cedargate.store.guard import store_guarded
from cedargate.store.tables import budget_counters, spend_ledger

logger = logging.getLogger(__name__)

UNCAPPED_CENTS: Final = 2**63 - 1
"""``context.budget.remaining_cents`` when no spend cap applies (Cedar's largest Long)."""

_SPEND_WINDOWS: Final = (Window.DAY, Window.MONTH)
_NO_CAPS: Final = CapsConfig()
_WINDOW_WORDS: Final = {Window.DAY: "daily spend", Window.MONTH: "monthly spend", Window.MINUTE: "calls-per-minute"}


@dataclass(frozen=True)
class Counter:
    """One row of ``budget_counters`` a call touches, and the cap on it (``None``: counted, not capped)."""

    scope: str
    subject: str
    period: Period
    amount: int
    cap: int | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.scope, self.subject, self.period.window.value, self.period.key)


@dataclass(frozen=True)
class Reservation:
    """What ``check`` took for one call; ``charge`` or ``release`` settles it.

    ``at`` is when the cents were reserved: the ledger dates the spend then, so it falls in the
    same day and month as the counters it raised, however late the handler finishes.
    """

    principal: Principal
    tool: str
    cents: int
    spend: tuple[Counter, ...]
    at: datetime


class Budget:
    """Spend and rate caps backed by the store; without a store every call is admitted and nothing is kept."""

    def __init__(self, store: Store | None = None, config: BudgetsConfig | None = None, clock: Clock = utc_now) -> None:
        self._store = store
        self._config = config or BudgetsConfig()
        self._clock = clock

    def caps_for(self, scope: str, subject: str) -> CapsConfig:
        table = self._config.teams if scope == "team" else self._config.agents
        return table.get(subject, _NO_CAPS)

    def spend_capped(self, principal: Principal) -> bool:
        """Whether any spend cap applies to this principal (else its headroom is ``UNCAPPED_CENTS``, no read)."""
        if self._store is None:
            return False
        team, agent = self.caps_for("team", principal.team), self.caps_for("agent", principal.agent)
        return any(c.day_cents is not None or c.month_cents is not None for c in (team, agent))

    @store_guarded("the budget check")
    def remaining_cents(self, principal: Principal) -> int:
        """The smallest headroom under any spend cap that applies to this principal (for Cedar)."""
        if self._store is None:
            return UNCAPPED_CENTS
        now = self._clock()
        remaining = UNCAPPED_CENTS
        capped = [
            (scope, subject, window, cap)
            for scope, subject in (("team", principal.team), ("agent", principal.agent))
            for window in _SPEND_WINDOWS
            if (cap := _cap(self.caps_for(scope, subject), window)) is not None
        ]
        if not capped:  # nothing to read: no connection taken from the pool
            return remaining
        with self._store.engine.connect() as connection:
            for scope, subject, window, cap in capped:
                spent = _amount(connection, scope, subject, period_of(window, now))
                remaining = min(remaining, max(cap - spent, 0))
        return remaining

    @store_guarded("the budget check")
    def check(self, principal: Principal, manifest: ToolManifest) -> Reservation | None:
        """Reserve the call's cost and count it, or raise ``BudgetExceeded`` naming cap, spend and reset time."""
        if self._store is None:
            return None
        now = self._clock()
        counters = self._counters(principal, manifest.cost_cents, now)
        if not counters:  # a free call with no rate cap: nothing to count, no transaction
            return Reservation(principal, manifest.name, 0, (), now)
        with self._store.engine.begin() as connection:
            for counter in counters:
                if not _take(connection, counter):
                    used = _amount(connection, counter.scope, counter.subject, counter.period)
                    spent = used if counter.period.window is Window.MINUTE else min(used, _charged(connection, counter))
                    connection.rollback()
                    raise BudgetExceeded(_over_cap_message(counter, spent, used - spent, manifest))
        spend = tuple(c for c in counters if c.period.window is not Window.MINUTE)
        return Reservation(principal, manifest.name, manifest.cost_cents, spend, now)

    def charge(self, reservation: Reservation | None, event_id: str) -> None:
        """Record the reserved spend in the ledger (the counters already hold it).

        Runs after the handler did its work, so a ledger failure is logged, not turned into a
        failed call: the caps stay enforced by the counters the reservation already raised.
        """
        if self._store is None or reservation is None or reservation.cents == 0:
            return  # the ledger records spend; a free call spent nothing
        try:
            self._write_ledger(self._store, reservation, event_id)
        except SQLAlchemyError:
            logger.exception("spend ledger row for event %s could not be written", event_id)

    def _write_ledger(self, store: Store, reservation: Reservation, event_id: str) -> None:
        p = reservation.principal
        with store.engine.begin() as connection:
            row = {"agent": p.agent, "team": p.team, "tool": reservation.tool, "cents": reservation.cents}
            connection.execute(_LEDGER_ROW, {"event_id": event_id, **row, "at": reservation.at})

    @store_guarded("the budget refund")
    def release(self, reservation: Reservation | None) -> None:
        """Give back the reserved cents of a call whose handler failed (the call still counts for rate caps)."""
        if self._store is None or reservation is None or reservation.cents == 0:
            return
        with self._store.engine.begin() as connection:
            for counter in sorted(reservation.spend, key=lambda c: c.key):
                connection.execute(
                    update(budget_counters)
                    .where(_row(counter.scope, counter.subject, counter.period))
                    .values(amount=budget_counters.c.amount - counter.amount)
                )

    def _counters(self, principal: Principal, cents: int, now: datetime) -> list[Counter]:
        counters: list[Counter] = []
        for scope, subject in (("team", principal.team), ("agent", principal.agent)):
            caps = self.caps_for(scope, subject)
            # Spend counters only move for calls that cost something; a zero would only add empty rows.
            for window in _SPEND_WINDOWS if cents > 0 else ():
                counters.append(Counter(scope, subject, period_of(window, now), cents, _cap(caps, window)))
            if caps.calls_per_minute is not None:
                counters.append(Counter(scope, subject, period_of(Window.MINUTE, now), 1, caps.calls_per_minute))
        # A fixed lock order: two transactions never wait on each other's rows in a cycle.
        return sorted(counters, key=lambda c: c.key)


def _cap(caps: CapsConfig, window: Window) -> int | None:
    return {Window.DAY: caps.day_cents, Window.MONTH: caps.month_cents, Window.MINUTE: caps.calls_per_minute}[window]


def _row(scope: str, subject: str, period: Period) -> Any:
    return and_(
        budget_counters.c.scope == scope,
        budget_counters.c.subject == subject,
        budget_counters.c.window == period.window.value,
        budget_counters.c.period == period.key,
    )


def _amount(connection: Connection, scope: str, subject: str, period: Period) -> int:
    value = connection.execute(select(budget_counters.c.amount).where(_row(scope, subject, period))).scalar()
    return int(value or 0)


def _charged(connection: Connection, counter: Counter) -> int:
    """Cents the ledger holds for ``counter``'s period: spent by calls that ran, not reserved by calls in flight."""
    who = spend_ledger.c.team if counter.scope == "team" else spend_ledger.c.agent
    period = counter.period
    query = select(func.coalesce(func.sum(spend_ledger.c.cents), 0)).where(
        and_(who == counter.subject, spend_ledger.c.at >= period.starts_at, spend_ledger.c.at < period.resets_at)
    )
    return int(connection.execute(query).scalar() or 0)


def _take(connection: Connection, counter: Counter) -> bool:
    """Add ``counter.amount`` to its row unless that passes the cap; the check and the add are one statement."""
    key = {"k_scope": counter.scope, "k_subject": counter.subject, "k_window": counter.period.window.value}
    key["k_period"] = counter.period.key
    insert_zero = _INSERT_ZERO_PG if connection.dialect.name == "postgresql" else _INSERT_ZERO_SQLITE
    connection.execute(insert_zero, key)
    if counter.cap is None:
        result = connection.execute(_ADD, {**key, "k_amount": counter.amount})
    else:
        result = connection.execute(_ADD_UNDER_CAP, {**key, "k_amount": counter.amount, "k_cap": counter.cap})
    return bool(result.rowcount == 1)


# Built once: constructing these expressions cost more than running them on every call.
_KEY_ROW: Final = and_(
    budget_counters.c.scope == bindparam("k_scope"),
    budget_counters.c.subject == bindparam("k_subject"),
    budget_counters.c.window == bindparam("k_window"),
    budget_counters.c.period == bindparam("k_period"),
)
_ZERO_ROW: Final = {
    "scope": bindparam("k_scope"),
    "subject": bindparam("k_subject"),
    "window": bindparam("k_window"),
    "period": bindparam("k_period"),
    "amount": 0,
}
_LEDGER_ROW: Final = insert(spend_ledger)
_INSERT_ZERO_SQLITE: Final = sqlite.insert(budget_counters).values(**_ZERO_ROW).on_conflict_do_nothing()
_INSERT_ZERO_PG: Final = postgresql.insert(budget_counters).values(**_ZERO_ROW).on_conflict_do_nothing()
_ADDED: Final = {"amount": budget_counters.c.amount + bindparam("k_amount")}
_ADD: Final = update(budget_counters).where(_KEY_ROW).values(**_ADDED)
_ADD_UNDER_CAP: Final = (
    update(budget_counters)
    .where(and_(_KEY_ROW, budget_counters.c.amount + bindparam("k_amount") <= bindparam("k_cap")))
    .values(**_ADDED)
)


def _over_cap_message(counter: Counter, spent: int, reserved: int, manifest: ToolManifest) -> str:
    """Why the call was refused; cents reserved by calls still running are told apart from cents spent.

    A reservation is given back when its call fails, so then a retry may pass before the reset.
    """
    what = _WINDOW_WORDS[counter.period.window]
    resets = counter.period.resets_at.isoformat(timespec="seconds")
    if counter.period.window is Window.MINUTE:
        usage = f"cap is {counter.cap} calls, {spent} made this minute"
    else:
        in_flight = f" and {reserved} cents reserved by calls in flight" if reserved > 0 else ""
        usage = (
            f"cap is {counter.cap} cents, {spent} cents spent{in_flight}, "
            f"`{manifest.name}` costs {manifest.cost_cents} cents"
        )
    message = f"over budget: {counter.scope} `{counter.subject}` {what} {usage}; nothing ran"
    if reserved > 0:
        return (
            f"{message}; a retry may pass once the calls in flight finish (a failed call gives its cents back), "
            f"else the cap resets at {resets}"
        )
    return f"{message}; the cap resets at {resets}"
