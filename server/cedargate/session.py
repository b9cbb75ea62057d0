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

    def next_call(self) -> int:
        self.call_count += 1
        return self.call_count

    def record_read(self, event_id: str) -> None:
        self.context_sources.append(event_id)

    def touch_repository(self, name: str) -> None:
        if name not in self.repositories:
            self.repositories.append(name)
