"""Cedar entity type names and typed entity references, shared by schema, entities and requests.

References stay structured (type, id) end to end; nothing builds ``Type::"id"`` strings and
splits them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

AGENT: Final = "Agent"
TEAM: Final = "Team"
USER: Final = "User"
ENVIRONMENT: Final = "Environment"
REPOSITORY: Final = "Repository"
AWS_ACCOUNT: Final = "AwsAccount"
ACTION: Final = "Action"


@dataclass(frozen=True, slots=True)
class EntityRef:
    """A Cedar entity uid."""

    type: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id}

    def __str__(self) -> str:
        return f"{self.type}::{self.id!r}".replace("'", '"')
