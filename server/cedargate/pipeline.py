"""The governed pipeline: one code path for every tool call.

    identify -> validate -> resolve -> authorize -> gate -> budget -> execute -> redact -> audit

Every path through ``Pipeline.call`` ends in exactly one audit event, and the audit sink is
asked whether it can write before anything else happens: if it cannot, nothing runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread

from cedargate.audit.event import AuditEvent, AuditPrincipal, AuditResource, Outcome
from cedargate.audit.log import AuditSink
from cedargate.authorize import Authorizer
from cedargate.budget import Budget
from cedargate.catalog import ToolCatalog
from cedargate.config import Config
from cedargate.errors import AuditWriteError, HandlerError, ResourceError, ToolInputError
from cedargate.gate import needs_approval
from cedargate.handlers import HandlerCall, HandlerRegistry
from cedargate.identity import Principal
from cedargate.redact import arguments_for_audit, redact_value
from cedargate.request_context import build_context
from cedargate.resolve import resolve_resource
from cedargate.result_cap import enforce_result_cap
from cedargate.session import SessionState
from cedargate.validate import validate_arguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRequest:
    """One tool call as it arrives, with the identity the transport established."""

    tool: str
    arguments: Mapping[str, Any] | None
    principal: Principal
    session: SessionState


@dataclass(frozen=True)
class CallResult:
    """What the agent gets back; ``event`` is ``None`` only when the audit trail could not be written."""

    outcome: Outcome
    payload: dict[str, Any] | None
    message: str | None
    event: AuditEvent | None

    @property
    def is_error(self) -> bool:
        return self.outcome is not Outcome.SUCCEEDED


class Pipeline:
    """Wires the steps; holds no policy logic of its own."""

    def __init__(
        self,
        config: Config,
        catalog: ToolCatalog,
        authorizer: Authorizer,
        handlers: HandlerRegistry,
        audit: AuditSink,
        budget: Budget | None = None,
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._authorizer = authorizer
        self._handlers = handlers
        self._audit = audit
        self._budget = budget or Budget()

    async def call(self, request: CallRequest) -> CallResult:
        """Run one call through every step; never raises for anything the agent sent."""
        started = time.perf_counter()
        event = _EventDraft.start(request)
        try:
            self._audit.ready()
        except AuditWriteError as exc:
            return CallResult(Outcome.FAILED, None, f"{exc}; nothing was run", None)
        try:
            payload = await self._governed(request, event)
        except (ToolInputError, ResourceError) as exc:
            return self._finish(event, started, Outcome.INVALID_ARGUMENTS, error=str(exc))
        except _Refused as refusal:
            return self._finish(event, started, refusal.outcome, error=refusal.message)
        except HandlerError as exc:
            return self._finish(event, started, Outcome.FAILED, error=str(exc))
        except Exception as exc:  # boundary: a crashing handler is audited, not propagated
            logger.exception("tool %s crashed", request.tool)
            return self._finish(
                event,
                started,
                Outcome.FAILED,
                error=f"tool `{request.tool}` failed unexpectedly ({type(exc).__name__}); see the server log",
            )
        return self._finish(event, started, Outcome.SUCCEEDED, payload=payload)

    async def _governed(self, request: CallRequest, event: _EventDraft) -> dict[str, Any]:
        manifest = self._catalog.get(request.tool)
        if manifest is None:
            raise _Refused(
                Outcome.UNKNOWN_TOOL, f"unknown tool `{request.tool}`: list the tools to see what this server publishes"
            )
        event.fields.update(
            manifest_hash=manifest.content_hash, action=manifest.name, duty=manifest.duty, risk=manifest.risk.value
        )
        call_number = request.session.next_call()
        args = validate_arguments(manifest, request.arguments)
        resource = resolve_resource(manifest, args, self._config)
        event.fields.update(
            resource=AuditResource(type=resource.ref.type, id=resource.ref.id), environment=resource.environment
        )
        context = build_context(request.principal, manifest, resource, args, request.session, call_number)
        decision = self._authorizer.authorize(request.principal, manifest.name, resource, context)
        event.fields["decision"] = decision
        if needs_approval(decision):
            raise _Refused(Outcome.APPROVAL_REQUIRED, decision.explain())
        if not decision.allowed:
            raise _Refused(Outcome.DENIED, decision.explain())
        self._budget.check(request.principal, manifest)
        if not manifest.risk.read_only:
            # Provenance: a change records what the session had read before it.
            event.fields["context_sources"] = list(request.session.context_sources)
        call = HandlerCall(manifest, args, resource, request.principal, event.event_id, request.session.id)
        try:
            result = await anyio.to_thread.run_sync(self._handlers.handler_for(manifest), call)
        finally:
            event.fields["execution"] = call.execution or None
        self._budget.charge(request.principal, manifest)
        payload = dict(redact_value(result))
        enforce_result_cap(manifest.name, payload)
        if manifest.risk.read_only:
            request.session.record_read(event.event_id)
        return payload

    def _finish(
        self,
        event: _EventDraft,
        started: float,
        outcome: Outcome,
        *,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> CallResult:
        digest = hashlib.sha256(_result_bytes(payload)).hexdigest() if payload is not None else None
        draft = AuditEvent(
            **event.fields,
            outcome=outcome,
            error=error,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            result_sha256=digest,
        )
        try:
            written = self._audit.append(draft)
        except AuditWriteError as exc:
            # The result is withheld: an agent never gets the output of a call the trail does not show.
            return CallResult(Outcome.FAILED, None, f"{exc}; the result was withheld", None)
        if error is not None:
            error = f"{error} (audit event {written.event_id})"
        return CallResult(outcome, payload, error, written)


class _Refused(Exception):
    """A decision (or missing tool) that ends the call before any handler runs."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


@dataclass
class _EventDraft:
    """The audit fields known so far; each step adds its own."""

    event_id: str
    fields: dict[str, Any]

    @classmethod
    def start(cls, request: CallRequest) -> _EventDraft:
        event_id = str(uuid.uuid4())
        p = request.principal
        return cls(
            event_id,
            {
                "event_id": event_id,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "principal": AuditPrincipal(agent=p.agent, team=p.team, on_behalf_of=p.on_behalf_of, mode=p.mode),
                "session_id": request.session.id,
                "task": p.task,
                "tool": request.tool,
                "arguments": arguments_for_audit(request.arguments or {}),
            },
        )


def _result_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
