"""The provenance summary a pull request carries: what task, which writes, what was read, tested how.

Everything in it is a fact cedargate recorded (audit event ids, commit trailers, the
workspace's last sandboxed run); nothing is taken from what the agent claims.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cedargate.errors import ToolInputError, quoted
from cedargate.identity import Principal
from cedargate.workspaces import TestRun

HEADING = "## Provenance (recorded by cedargate)"
_LOOKALIKE_HEADING: Final = re.compile(r"^ {0,3}(#{1,6}(\s|$)|<h[1-6][\s>])", re.IGNORECASE)
"""A markdown or HTML heading: one naming provenance would pass for cedargate's own section."""
MAX_LISTED_SOURCES = 100
"""Reads listed in the body; a longer session names how many more and where to find them all."""


def agent_body(text: str) -> str:
    """The agent's part of the body, refused if a line of it would pass for cedargate's section.

    A reviewer trusts the provenance section because cedargate alone writes it; a lookalike
    heading above it (or a line claiming to be recorded by cedargate) would put the agent's
    claims where a reviewer looks for recorded facts.
    """
    body = text.strip()
    for line in unicodedata.normalize("NFKC", body).splitlines():
        folded = line.casefold()
        if (_LOOKALIKE_HEADING.match(line) and "provenance" in folded) or "recorded by cedargate" in folded:
            raise ToolInputError(
                f"field `body`: {quoted(line.strip())} reads as the provenance section, which cedargate alone "
                "writes below the body; reword or remove that line"
            )
    return body


@dataclass(frozen=True)
class WriteRecord:
    """One commit on the branch and the audit event that made it (``None`` if made outside cedargate)."""

    commit: str
    subject: str
    audit_event: str | None


@dataclass(frozen=True)
class Provenance:
    principal: Principal
    branch: str
    base: str
    base_commit: str
    head_commit: str
    writes: Sequence[WriteRecord]
    context_sources: Sequence[str]
    last_test: TestRun | None
    event_id: str

    def markdown(self) -> str:
        p = self.principal
        lines = [
            HEADING,
            "",
            f"- task: `{p.task}`",
            f"- agent: `{p.agent}` (team `{p.team}`, {p.mode}) on behalf of `{p.on_behalf_of}`",
            f"- branch: `{self.branch}` at `{self.head_commit}`, from `{self.base}` at `{self.base_commit}`",
            f"- this pull request: audit event `{self.event_id}`",
            "",
            "### Writes (audit events)",
        ]
        lines += [
            f"- `{w.audit_event or 'not made through cedargate'}`: {w.commit[:12]} {w.subject}" for w in self.writes
        ] or ["- none"]
        lines += ["", "### Context sources (audit events of the reads before these writes)", *self._source_lines()]
        lines += ["", "### Last sandboxed test run", *self._test_lines()]
        return "\n".join(lines) + "\n"

    def _source_lines(self) -> list[str]:
        """The latest reads; forges cap a body's length, and a long session reads thousands of files."""
        if not self.context_sources:
            return ["- none recorded in this session"]
        listed = self.context_sources[-MAX_LISTED_SOURCES:]
        lines = [f"- `{event}`" for event in listed]
        earlier = len(self.context_sources) - len(listed)
        if earlier:
            lines.append(
                f"- and {earlier} earlier reads: `cedargate provenance {self.event_id}` lists every one of them"
            )
        return lines

    def _test_lines(self) -> list[str]:
        run = self.last_test
        if run is None:
            return ["- none: tests were not run through cedargate for this branch"]
        verdict = (
            "timed out" if run.timed_out else ("passed" if run.exit_code == 0 else f"failed (exit {run.exit_code})")
        )
        current = "the branch head" if run.commit == self.head_commit else f"`{run.commit}`, not the branch head"
        if run.clean is False:
            current += ", with uncommitted changes"
        return [
            f"- `{run.command}`: {verdict} in {run.duration_ms / 1000:.1f} s",
            f"- tested {current}; audit event `{run.event_id}`",
            f"- output: {run.output_bytes} bytes, sha256 `{run.output_sha256}`",
        ]
