"""The MCP session a call belongs to, as policies and the audit trail see it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass
class SessionState:
    """Per-session facts carried across calls: its id, how many calls it made, what it read."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    call_count: int = 0
    context_sources: list[str] = field(default_factory=list)
    """Event ids of the session's successful reads, in order: what the agent saw before it wrote."""

    repositories: list[str] = field(default_factory=list)
    """Repositories the session's allowed calls have reached, in first-touch order (Cedar sees them)."""

    last_change: str | None = None
    """The event of the session's latest write-risk call: the next one's sources start from it."""
    reads_before_last_change: int = 0

    def next_call(self) -> int:
        self.call_count += 1
        return self.call_count

    def record_read(self, event_id: str) -> None:
        self.context_sources.append(event_id)

    def sources_of_change(self, event_id: str) -> list[str]:
        """What a write-risk call records as its sources, and it becomes the session's latest change.

        The previous change (whose own sources hold the reads before it) and the reads since:
        each event stays short however long the session runs, and following the links gives
        every read the session made before this change.
        """
        since = self.context_sources[self.reads_before_last_change :]
        sources = [self.last_change, *since] if self.last_change is not None else since
        self.last_change, self.reads_before_last_change = event_id, len(self.context_sources)
        return sources

    def touch_repository(self, name: str) -> None:
        if name not in self.repositories:
            self.repositories.append(name)
