"""Checking a whole audit file: every hash recomputed, every link followed.

The report names the first line at fault and what is wrong with it: an edited line fails its
own hash; a removed or reordered line breaks the link from the line after it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from cedargate.audit.event import GENESIS_HASH, event_hash


class VerifyReport(BaseModel):
    """The verdict on one audit file; ``line`` and ``event_id`` locate the first problem."""

    path: str
    ok: bool
    events: int
    line: int | None = None
    event_id: str | None = None
    problem: str | None = None
    checkpoints: int | None = None
    """How many signed checkpoints held; ``None`` when none were checked."""


def verify_log(path: Path) -> VerifyReport:
    """Recompute the chain of ``path`` from genesis; stops at the first problem."""
    previous = GENESIS_HASH
    count = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                return _fail(path, count, number, None, "line is not valid JSON (torn or edited)")
            event_id = record.get("event_id") if isinstance(record, dict) else None
            if not isinstance(record, dict) or "hash" not in record:
                return _fail(path, count, number, event_id, "line is not an audit event")
            if event_hash(record) != record["hash"]:
                return _fail(path, count, number, event_id, "event was altered: its hash does not match its content")
            if record.get("prev_hash") != previous:
                return _fail(
                    path,
                    count,
                    number,
                    event_id,
                    "chain broken: the previous event was removed, reordered or altered",
                )
            previous = record["hash"]
            count += 1
    return VerifyReport(path=str(path), ok=True, events=count)


def _fail(path: Path, count: int, line: int, event_id: str | None, problem: str) -> VerifyReport:
    return VerifyReport(path=str(path), ok=False, events=count, line=line, event_id=event_id, problem=problem)


def verify_checkpoints(report: VerifyReport, path: Path, checkpoints: Path, public_key: Path) -> VerifyReport:
    """Add the signed checkpoints' verdict to an intact chain's report: this is what catches a cut-off tail."""
    from cedargate.audit.checkpoint import check_checkpoints, event_hashes, load_public_key

    count, problem = check_checkpoints(event_hashes(path), checkpoints, load_public_key(public_key))
    if problem is None:
        return report.model_copy(update={"checkpoints": count})
    return report.model_copy(update={"ok": False, "checkpoints": count, "problem": problem})
