"""Risk levels and the MCP annotations each one implies.

Risk comes from the manifest only: nothing a client sends can change it.
"""

from __future__ import annotations

from enum import StrEnum


class Risk(StrEnum):
    """How much a tool can change: the basis of annotations and Cedar action groups."""

    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"
    PRIVILEGED = "privileged"

    @property
    def action_group(self) -> str:
        """The Cedar action group every action of this risk belongs to."""
        return f"risk:{self.value}"

    @property
    def read_only(self) -> bool:
        return self is Risk.READ

    @property
    def destructive(self) -> bool:
        return self in (Risk.DESTRUCTIVE, Risk.PRIVILEGED)
