"""The MCP session a call belongs to, as policies and the audit trail see it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass
class SessionState:
    """Per-session facts carried across calls: its id and how many calls it has made."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    call_count: int = 0

    def next_call(self) -> int:
        self.call_count += 1
        return self.call_count
