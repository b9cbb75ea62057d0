"""Provenance: the chain of calls that led to a change, read back from the audit trail.

A write-risk event lists (``context_sources``) its session's successful reads since the
session's previous write-risk call, and that call's event, whose sources hold the reads
before it; a commit made by cedargate names its write event in a ``Cedargate-Audit-Event:``
trailer. Starting from either, this follows the sources back and returns them as a tree.

Only cedargate's own trailer block counts: it is appended after the agent's text, so it is
the message's last paragraph, the one git parses as trailers (``%(trailers)``). A
``Cedargate-`` line the agent wrote above it is text, not attribution.
"""

from __future__ import annotations

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
    """One call and the calls it drew on; ``event`` is ``None`` when the source is missing from the log."""

    event_id: str
    event: dict[str, Any] | None
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
    """The tree of calls behind ``event_id``; each event appears once even if several changes drew on it."""
    by_id: Mapping[str, dict[str, Any]] = {str(e.get("event_id")): e for e in events}
    if event_id not in by_id:
        raise CedargateError(f"event `{event_id}` is not in the audit log: check --log, or the log was rotated")
    return _node(event_id, by_id, set())


def _node(event_id: str, by_id: Mapping[str, dict[str, Any]], seen: set[str]) -> ProvenanceNode:
    event = by_id.get(event_id)
    seen.add(event_id)
    sources = [
        _node(source, by_id, seen)
        for source in (event or {}).get("context_sources") or []
        if source not in seen  # a log is a DAG by construction; this only guards against a forged loop
    ]
    return ProvenanceNode(event_id=event_id, event=event, sources=sources)


def render(node: ProvenanceNode, depth: int = 0) -> list[str]:
    """Indented lines, the change first and what it drew on below it."""
    pad = "  " * depth + ("<- " if depth else "")
    if node.event is None:
        lines = [f"{pad}event {node.event_id}: missing from the audit log"]
    else:
        lines = [pad + _describe(node.event)]
    for source in node.sources:
        lines.extend(render(source, depth + 1))
    return lines


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
