"""What ``cedargate budget show`` reports: each team's and agent's spend and caps in the current windows."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import or_, select

from cedargate.approvals import Clock, utc_now
from cedargate.budget_windows import Window, period_of
from cedargate.config import BudgetsConfig, CapsConfig
from cedargate.store import Store
from cedargate.store.tables import budget_counters


class WindowUsage(BaseModel):
    used: int
    cap: int | None
    resets_at: str


class BudgetLine(BaseModel):
    """One team or agent: cents spent today and this month, calls this minute, against the caps."""

    scope: str
    subject: str
    day_cents: WindowUsage
    month_cents: WindowUsage
    calls_this_minute: WindowUsage


def budget_report(store: Store, config: BudgetsConfig, clock: Clock = utc_now) -> list[BudgetLine]:
    """Every capped team and agent, and every one that spent or called in the current windows."""
    now = clock()
    periods = {window: period_of(window, now) for window in Window}
    current = or_(
        *((budget_counters.c.window == p.window.value) & (budget_counters.c.period == p.key) for p in periods.values())
    )
    used: dict[tuple[str, str, str], int] = {}
    with store.engine.connect() as connection:
        for row in connection.execute(select(budget_counters).where(current)).mappings():
            used[(row["scope"], row["subject"], row["window"])] = int(row["amount"])
    subjects = {(scope, subject) for scope, subject, _ in used}
    subjects |= {("team", t) for t in config.teams} | {("agent", a) for a in config.agents}
    lines = []
    for scope, subject in sorted(subjects):
        caps = (config.teams if scope == "team" else config.agents).get(subject, CapsConfig())

        def usage(window: Window, cap: int | None, s: str = scope, x: str = subject) -> WindowUsage:
            resets = periods[window].resets_at.isoformat(timespec="seconds")
            return WindowUsage(used=used.get((s, x, window.value), 0), cap=cap, resets_at=resets)

        lines.append(
            BudgetLine(
                scope=scope,
                subject=subject,
                day_cents=usage(Window.DAY, caps.day_cents),
                month_cents=usage(Window.MONTH, caps.month_cents),
                calls_this_minute=usage(Window.MINUTE, caps.calls_per_minute),
            )
        )
    return lines
