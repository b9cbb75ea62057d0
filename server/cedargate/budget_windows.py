"""The windows caps are counted in: UTC day, UTC month and minute, each with its reset time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Window(StrEnum):
    DAY = "day"
    MONTH = "month"
    MINUTE = "minute"


@dataclass(frozen=True)
class Period:
    """One window instance: its key in the counters table and when it ends."""

    window: Window
    key: str
    resets_at: datetime
    starts_at: datetime


def period_of(window: Window, now: datetime) -> Period:
    """The period of ``window`` that contains ``now`` (an aware UTC datetime)."""
    if window is Window.MINUTE:
        start = now.replace(second=0, microsecond=0)
        return Period(window, start.strftime("%Y-%m-%dT%H:%M"), start + timedelta(minutes=1), start)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if window is Window.DAY:
        return Period(window, day.strftime("%Y-%m-%d"), day + timedelta(days=1), day)
    month = day.replace(day=1)
    following = (
        month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1)
    )
    return Period(window, month.strftime("%Y-%m"), following, month)
