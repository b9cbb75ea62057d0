"""The MCP session a call belongs to, as policies and the audit trail see it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import NamedTuple


class ChangeBase(NamedTuple):
    """What a change's sources were taken from; it becomes the session's state once the change's event is written."""

    linked: tuple[str, ...]
    """The session's latest changes the new one links."""
    reads: int
    """How many of the session's reads the new one covers (listed, or behind a linked change)."""


@dataclass
class SessionState:
    """Per-session facts carried across calls: its id, how many calls it made, what it read."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    call_count: int = 0
    context_sources: list[str] = field(default_factory=list)
    """Event ids of the session's successful reads whose events are written, in order: what the agent saw."""

    repositories: list[str] = field(default_factory=list)
    """Repositories the session's allowed calls have reached, in first-touch order (Cedar sees them)."""

    latest_changes: tuple[str, ...] = ()
    """Events of the session's write-risk calls no later written change links yet: the next one's sources
    start from them. One, unless changes ran concurrently; none before the first change is written."""
    reads_linked: int = 0
    """The reads ``latest_changes`` already reach: the next change lists only ``context_sources`` after these."""

    def next_call(self) -> int:
        self.call_count += 1
        return self.call_count

    def record_read(self, event_id: str) -> None:
        """A successful read, once its event is written: a read the trail lacks is no source."""
        self.context_sources.append(event_id)

    def sources_of_change(self) -> tuple[list[str], ChangeBase]:
        """What a write-risk call records as its sources, and the base to pass ``changed`` once its event is written.

        The previous change (whose own sources hold the reads before it) and the reads since:
        each event stays short however long the session runs, and following the links gives
        every read the session made before this change. Nothing moves until ``changed``, so a
        change whose event is never written takes no reads with it and is linked by no later one.
        """
        reads = len(self.context_sources)
        since = self.context_sources[self.reads_linked : reads]
        linked = self.latest_changes
        return ([*linked, *since] if linked else since), ChangeBase(linked, reads)

    def changed(self, event_id: str, base: ChangeBase) -> None:
        """The change's event is written: later changes link it instead of what it linked.

        A change written meanwhile by a concurrent call of the session stays linked beside it,
        and the reads already covered never shrink, so no written change or read drops out.
        """
        kept = tuple(c for c in self.latest_changes if c not in base.linked) if self.latest_changes else ()
        self.latest_changes = (*kept, event_id)
        if base.reads > self.reads_linked:
            self.reads_linked = base.reads

    def touch_repository(self, name: str) -> None:
        if name not in self.repositories:
            self.repositories.append(name)
