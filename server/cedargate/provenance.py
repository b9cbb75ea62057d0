"""Provenance: the chain of calls that led to a change, read back from the audit trail.

A write-risk event lists (``context_sources``) its session's successful reads since the
session's previous write-risk call, and that call's event, whose sources hold the reads
before it; a commit made by cedargate names its write event in a ``Cedargate-Audit-Event:``
trailer. Starting from either, this follows the sources back and returns the chain of
changes flat, each with its own reads.

Only cedargate's own trailer block counts: it is appended after the agent's text, so it is
the message's last paragraph, the one git parses as trailers (``%(trailers)``). A
``Cedargate-`` line the agent wrote above it is text, not attribution.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from cedargate.errors import CedargateError
from cedargate.git import run_git

AUDIT_TRAILER: Final = "Cedargate-Audit-Event"
"""The trailer naming the audit event of the call that made a commit (see ``handlers.repo_common.commit_message``)."""
AUDIT_EVENT_FORMAT: Final = f"%(trailers:key={AUDIT_TRAILER},valueonly,separator=%x20)"
"""``git log --format`` for the audit event values in a commit's trailer block; read with ``audit_event_of``."""


class ProvenanceNode(BaseModel):
    """One call and the calls it drew on; ``event`` is ``None`` when the source is missing from the log.

    Flat, however long the session: the change asked about lists its own reads and then every
    earlier change behind it (nearest first), each of those with its own reads. Nesting the
    chain instead would go as deep as the session is long (past Python's and the JSON
    serializer's depth limits).
    """

    event_id: str
    event: dict[str, Any] | None
    depth: int = 0
    """How many changes back from the one asked about: 0 for it and its reads, 1 for the change before it..."""
    sources: list[ProvenanceNode] = []


def event_id_of_commit(repo: Path, commit: str) -> str:
    """The audit event named by ``commit``'s trailer; fails when the commit was not made by cedargate."""
    result = run_git(repo, ["log", "-1", f"--format={AUDIT_EVENT_FORMAT}", "--end-of-options", commit], check=False)
    if result.returncode != 0:
        raise CedargateError(f"`{commit}` is not a commit in `{repo}`")
    event_id = audit_event_of(result.stdout.decode("utf-8", errors="replace"))
    if event_id is None:
        raise CedargateError(
            f"commit `{commit}` has no `Cedargate-Audit-Event:` trailer: it was not made through cedargate"
        )
    return event_id


def audit_event_of(trailer_values: str) -> str | None:
    """The audit event in ``AUDIT_EVENT_FORMAT``'s output: the last value, as git takes a repeated trailer."""
    values = trailer_values.split()
    return values[-1] if values else None


def trace(event_id: str, events: Iterable[dict[str, Any]]) -> ProvenanceNode:
    """The change ``event_id`` with its reads, then each earlier change behind it with its reads.

    Walked breadth first without recursion: a session of any length. Each event appears once
    even if several changes drew on it (and a forged loop ends the walk).
    """
    by_id: Mapping[str, dict[str, Any]] = {str(e.get("event_id")): e for e in events}
    if event_id not in by_id:
        raise CedargateError(f"event `{event_id}` is not in the audit log: check --log, or the log was rotated")
    top = ProvenanceNode(event_id=event_id, event=by_id[event_id])
    earlier: list[ProvenanceNode] = []
    seen = {event_id}
    pending = deque([top])
    while pending:
        change = pending.popleft()
        listed = (change.event or {}).get("context_sources")
        for source in map(str, listed if isinstance(listed, list) else ()):  # a hand-edited log is read, not trusted
            if source in seen:
                continue
            seen.add(source)
            event = by_id.get(source)
            if event is not None and event.get("context_sources") is not None:  # a change: it has sources of its own
                node = ProvenanceNode(event_id=source, event=event, depth=change.depth + 1)
                earlier.append(node)
                pending.append(node)
            else:
                change.sources.append(ProvenanceNode(event_id=source, event=event, depth=change.depth))
    top.sources.extend(earlier)
    return top


def render(top: ProvenanceNode) -> list[str]:
    """The change first, its reads below it, then each earlier change (``N back``) with its reads."""
    lines = [_line(top)]
    for node in top.sources:
        if node.depth == top.depth:
            lines.append("  <- " + _line(node))
            continue
        lines.append(f"  <- {node.depth} back: " + _line(node))
        lines.extend("    <- " + _line(read) for read in node.sources)
    return lines


def _line(node: ProvenanceNode) -> str:
    return f"event {node.event_id}: missing from the audit log" if node.event is None else _describe(node.event)


def _describe(event: Mapping[str, Any]) -> str:
    principal = event.get("principal") or {}
    resource = (event.get("resource") or {}).get("id", "-")
    args = event.get("arguments") or {}
    detail = ", ".join(f"{k}={args[k]}" for k in ("path", "branch", "ref") if k in args)
    return (
        f"{event.get('time')} {event.get('tool')} {resource}@{event.get('environment') or '-'}"
        f"{' (' + detail + ')' if detail else ''}: {event.get('outcome')} "
        f"[agent {principal.get('agent')} for {principal.get('on_behalf_of')}, task {event.get('task')}, "
        f"session {event.get('session_id')}, event {event.get('event_id')}]"
    )
