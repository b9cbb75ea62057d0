"""The audit event: a documented record with constant outcome names and a hash chain.

Each event carries the previous event's hash and its own; the own hash is the sha256 of the
event's canonical JSON without the ``hash`` key. Editing, removing or reordering a line
breaks the chain at that line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from cedargate.audit.canonical import canonical_json
from cedargate.decision import Decision
from cedargate.shadow import ShadowVerdict

SCHEMA_VERSION: Final = 1
GENESIS_HASH: Final = "0" * 64


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    DENIED = "denied"
    APPROVAL_REQUIRED = "approval_required"
    OVER_BUDGET = "over_budget"
    REVOKED = "revoked"
    FROZEN = "frozen"
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_TOOL = "unknown_tool"
    FAILED = "failed"


class AuditPrincipal(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent: str
    team: str
    on_behalf_of: str
    mode: str


class AuditResource(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    id: str


class AuditChanges(BaseModel):
    """The repository paths a call changes and their path classes, as the policies saw them."""

    model_config = ConfigDict(frozen=True)

    paths: list[str]
    classes: list[str]
    unclassified: bool = False
    """Some path falls in no class."""


class ApprovalLink(BaseModel):
    """The approval a call opened (``pending``) or used (``granted``), linking request, approval and execution."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: str
    approver: str | None = None
    request_event_id: str
    self_approvable: bool = False


class AuditEvent(BaseModel):
    """One call, as the auditor reads it. ``prev_hash`` and ``hash`` are filled by the log."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    event_id: str
    time: str
    principal: AuditPrincipal
    session_id: str
    task: str
    tool: str
    manifest_hash: str | None = None
    action: str | None = None
    duty: str | None = None
    resource: AuditResource | None = None
    environment: str | None = None
    risk: str | None = None
    arguments: dict[str, Any]
    decision: Decision | None = None
    shadow: ShadowVerdict | None = None
    """Set when shadow policies (or a shadow environment) would have decided otherwise."""
    outcome: Outcome
    error: str | None = None
    duration_ms: float
    result_sha256: str | None = None
    execution: dict[str, Any] | None = None
    context_sources: list[str] | None = None
    changes: AuditChanges | None = None
    """Set on a call that names repository paths it changes: the diff's paths survive a clipped ``patch``."""
    traceparent: str | None = None
    """The W3C trace context the client sent in ``_meta.traceparent``, when it sent one."""
    approval: ApprovalLink | None = None
    prev_hash: str = GENESIS_HASH
    hash: str = ""


@dataclass(frozen=True)
class WrittenEvent:
    """An event as the log wrote it: the record of its line, chain fields included.

    The log writes records (``cedargate.audit.record``), not models: the model, ``event``,
    is built from the record when first read, by a secondary sink's thread or a caller that
    looks at the event, not on every call's path.
    """

    record: dict[str, Any]
    """The line's fields as JSON values; shared with whoever built the record, never changed."""

    @property
    def event_id(self) -> str:
        event_id: str = self.record["event_id"]
        return event_id

    @property
    def prev_hash(self) -> str:
        digest: str = self.record["prev_hash"]
        return digest

    @property
    def hash(self) -> str:
        digest: str = self.record["hash"]
        return digest

    @cached_property
    def event(self) -> AuditEvent:
        """The event exactly as its line reads, chain fields included."""
        return AuditEvent.model_validate(self.record)


def event_hash(record: dict[str, Any]) -> str:
    """sha256 of the record without its ``hash`` key."""
    return sealed(record)[0]


def sealed(record: dict[str, Any]) -> tuple[str, str]:
    """The record's hash and its JSON line, from one serialisation of the record without ``hash``.

    The line is that canonical body with ``"hash"`` appended as its last key; readers parse
    lines, and the hash is always recomputed over the canonical body.
    """
    body = canonical_json({k: v for k, v in record.items() if k != "hash"} if "hash" in record else record)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return digest, f'{body[:-1]},"hash":"{digest}"}}'
