"""The governed pipeline: one code path for every tool call.

    identify -> validate -> resolve -> authorize -> gate -> budget -> execute -> redact -> audit

Every path through ``Pipeline.call`` ends in exactly one audit event, and the audit sink is
asked whether it can write before anything else happens: if it cannot, nothing runs. The
steps that need the governance store (holds, budget headroom, gate, budget, handler) run in
worker threads; an allowed call with no spend cap makes one such trip, holds checked first.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from cedargate.audit.event import AuditEvent, AuditPrincipal, AuditResource, Outcome, WrittenEvent
from cedargate.audit.event_id import new_event_id
from cedargate.audit.log import AuditSink
from cedargate.audit.record import EventRecord
from cedargate.budget import UNCAPPED_CENTS, Budget
from cedargate.cedar_types import REPOSITORY
from cedargate.change_paths import call_changes
from cedargate.config import Config
from cedargate.decision import Decision
from cedargate.errors import (
    AuditWriteError,
    BudgetExceeded,
    HandlerError,
    ResourceError,
    StoreError,
    ToolInputError,
    clipped,
    quoted,
)
from cedargate.gate import Gate, GateTicket, needs_approval
from cedargate.handlers import HandlerCall, HandlerRegistry
from cedargate.holds import HoldKind, Holds
from cedargate.identity import Principal
from cedargate.progress import ProgressReport, no_progress
from cedargate.redact import MAX_AUDIT_STRING, arguments_for_audit, redact_text, redact_value
from cedargate.request_context import build_context
from cedargate.resolve import resolve_call
from cedargate.result_cap import enforce_result_cap
from cedargate.risk import Risk
from cedargate.session import SessionState
from cedargate.snapshot import SnapshotHolder
from cedargate.validate import validate_arguments

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

Offload = Callable[..., Awaitable[Any]]
"""Runs a blocking function off the event loop: ``anyio.to_thread.run_sync`` unless swapped."""


@dataclass(frozen=True)
class CallRequest:
    """One tool call as it arrives, with the identity the transport established."""

    tool: str
    arguments: Mapping[str, Any] | None
    principal: Principal
    session: SessionState
    traceparent: str | None = None
    """The client's W3C trace context (``_meta.traceparent``); recorded, never trusted for identity."""
    approval_id: str | None = None
    """An approval the caller names explicitly (otherwise a grant for these exact arguments is looked up)."""
    progress: ProgressReport = no_progress
    """Where the handler reports how long work is going (the client, when it asked)."""


@dataclass(frozen=True)
class CallResult:
    """What the agent gets back; ``written`` is ``None`` only when the audit trail could not be written."""

    outcome: Outcome
    payload: dict[str, Any] | None
    message: str | None
    written: WrittenEvent | None

    @property
    def event(self) -> AuditEvent | None:
        """The call's audit event as its line reads (chain fields set), or ``None`` when none was written."""
        return self.written.event if self.written is not None else None

    @property
    def is_error(self) -> bool:
        return self.outcome is not Outcome.SUCCEEDED


class Pipeline:
    """Wires the steps; holds no policy logic of its own."""

    def __init__(
        self,
        config: Config,
        snapshots: SnapshotHolder,
        handlers: HandlerRegistry,
        audit: AuditSink,
        budget: Budget | None = None,
        gate: Gate | None = None,
        holds: Holds | None = None,
        offload: Offload | None = None,
    ) -> None:
        self._config = config
        self._snapshots = snapshots
        self._handlers = handlers
        self._audit = audit
        self._budget = budget or Budget()
        self._gate = gate or Gate()
        self._holds = holds or Holds()
        self._offload = offload or anyio.to_thread.run_sync

    def rewired(
        self,
        *,
        handlers: HandlerRegistry | None = None,
        audit: AuditSink | None = None,
        offload: Offload | None = None,
    ) -> Pipeline:
        """The same pipeline with its handlers, audit sink or offload swapped (tests and benchmarks).

        ``offload`` runs the store visits and the handler; the benchmarks run them inline to
        measure the governance work without the worker-thread hop.
        """
        return Pipeline(
            self._config,
            self._snapshots,
            handlers or self._handlers,
            audit or self._audit,
            budget=self._budget,
            gate=self._gate,
            holds=self._holds,
            offload=offload or self._offload,
        )

    @property
    def handlers(self) -> HandlerRegistry:
        return self._handlers

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
        except BudgetExceeded as exc:
            return self._finish(event, started, Outcome.OVER_BUDGET, error=str(exc))
        except StoreError as exc:
            return self._finish(event, started, Outcome.FAILED, error=str(exc))
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
        except anyio.get_cancelled_exc_class():
            # The client gave up (or the server is stopping). The event is written before the
            # cancellation goes on: no call leaves no trace, and an unused approval is given back.
            with anyio.CancelScope(shield=True):
                approval = event.fields.get("approval")
                if approval is not None and not event.handler_started:
                    try:
                        await self._offload(self._gate.give_back, approval, event.event_id)
                    except StoreError:
                        logger.exception("approval of cancelled call %s could not be given back", event.event_id)
                self._finish(event, started, Outcome.FAILED, error=_CANCELLED[event.handler_started])
            raise
        return self._finish(event, started, Outcome.SUCCEEDED, payload=payload)

    async def _governed(self, request: CallRequest, event: _EventDraft) -> dict[str, Any]:
        # One snapshot for the whole call: a reload never mixes old tools with new policies.
        snapshot = self._snapshots.current
        manifest = snapshot.catalog.get(request.tool)
        if manifest is None:
            # An unknown name is whatever the agent sent (a pasted token, say): redacted before it is cut.
            name = redact_text(request.tool)
            event.fields["tool"] = clipped(name, MAX_AUDIT_STRING)
            raise _Refused(
                Outcome.UNKNOWN_TOOL, f"unknown tool {quoted(name)}: list the tools to see what this server publishes"
            )
        event.fields.update(
            manifest_hash=manifest.content_hash, action=manifest.name, duty=manifest.duty, risk=manifest.risk.value
        )
        event.sensitive_fields = manifest.sensitive_fields
        call_number = request.session.next_call()
        resource, args = resolve_call(manifest, validate_arguments(manifest, request.arguments), self._config)
        event.fields.update(
            resource=_audit_resource(resource.ref.type, resource.ref.id), environment=resource.environment
        )
        sources: tuple[str, ...] = ()
        if not manifest.risk.read_only:
            # Provenance: a change, allowed or not, records what the session had read before it
            # (a denied one shows where an injected instruction came from). A read copies nothing.
            # The session moves on only once the event is written (`_finish`).
            event.fields["context_sources"], base = request.session.sources_of_change()
            event.on_written = functools.partial(request.session.changed, base=base)
            sources = tuple(request.session.context_sources)
        store = _StoreVisits(self._offload, self._holds, request.principal, resource.environment, manifest.risk)
        remaining = UNCAPPED_CENTS
        if self._budget.spend_capped(request.principal):
            remaining = await store.visit(self._budget.remaining_cents, request.principal)
        changes = call_changes(manifest, args, resource, self._config)
        context = build_context(
            request.principal, manifest, resource, args, request.session, call_number, remaining, changes
        )
        if changes.paths:
            event.fields["changes"] = context["changes"]  # as the policies see it (never changed after)
        authorizer = snapshot.authorizer
        verdict = authorizer.decide(request.principal, manifest.name, resource, context)
        decision = verdict.decision
        event.fields.update(decision=decision, shadow=verdict.shadow)
        if verdict.enforced and needs_approval(decision):
            # Gate: a grant lets Cedar decide again with it; without one the call waits.
            ticket = GateTicket(request.principal, manifest, args, resource, event.event_id, request.approval_id)

            def redecide(approval: Mapping[str, Any]) -> Decision:
                with_grant = {**context, "approval": dict(approval)}
                return authorizer.decide(request.principal, manifest.name, resource, with_grant).decision

            gated = await store.visit(self._gate.admit, ticket, decision, redecide)
            decision = event.fields["decision"] = gated.decision
            event.fields["approval"] = gated.approval
            if gated.waiting is not None or needs_approval(decision):
                raise _Refused(Outcome.APPROVAL_REQUIRED, gated.waiting or decision.explain())
        if not verdict.enforced:
            logger.warning(
                "shadow environment `%s`: %s ran although it %s", resource.environment, request.tool, decision.explain()
            )
        elif not decision.allowed:
            await store.check_holds()  # a revoked agent or frozen environment is what the trail should say
            raise _Refused(Outcome.DENIED, decision.explain())
        if resource.ref.type == REPOSITORY:
            # Right after the decision, with no await between: a concurrent call of this session sees it.
            request.session.touch_repository(resource.ref.id)
        call = HandlerCall(
            manifest,
            args,
            resource,
            request.principal,
            event.event_id,
            request.session.id,
            context_sources=sources,
            progress=request.progress,
            changed_paths=changes.paths,
        )
        handler = self._handlers.handler_for(manifest)

        def budget_then_execute() -> dict[str, Any]:
            # Budget, handler and ledger share the call's one store visit (one worker-thread hop).
            try:
                reservation = self._budget.check(request.principal, manifest)
            except BudgetExceeded:
                # A cap stopped the call before it ran: the approval it consumed is still unused.
                self._gate.give_back(event.fields.get("approval"), event.event_id)
                raise
            event.handler_started = True
            try:
                result = handler(call)
            except BaseException:
                self._budget.release(reservation)
                raise
            self._budget.charge(reservation, event.event_id)
            return result

        try:
            visited = time.perf_counter()
            result = await store.visit(budget_then_execute)
            if time.perf_counter() - visited > _CANCEL_NOTICED_AFTER_S:
                # The wait for the worker thread is not interrupted: a call cancelled while its tool
                # ran learns it here, so its event says the result never reached the client.
                await anyio.lowlevel.checkpoint_if_cancelled()
        finally:
            event.fields["execution"] = call.execution or None
        payload = dict(redact_value(result, "", manifest.sensitive_fields))
        event.fields["result_sha256"] = hashlib.sha256(enforce_result_cap(manifest.name, payload)).hexdigest()
        if manifest.risk.read_only:
            event.on_written = request.session.record_read
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
        approval = event.fields.get("approval")
        if error is not None and event.handler_started and approval is not None and approval.status == "granted":
            # The grant is spent once the tool starts: an agent retrying a failed call must ask again.
            error += f"; approval `{approval.id}` was used by this call, so a retry needs a new approval"
        error = redact_text(error) if error is not None else None
        record = event.finished(
            outcome=outcome, error=error, duration_ms=round((time.perf_counter() - started) * 1000, 3)
        )
        try:
            written = self._audit.append(record)
        except AuditWriteError as exc:
            # The result is withheld: an agent never gets the output of a call the trail does not show.
            return CallResult(Outcome.FAILED, None, f"{exc}; the result was withheld", None)
        if event.on_written is not None:
            event.on_written(written.event_id)
        if error is not None:
            error = f"{error} (audit event {written.event_id})"
        return CallResult(outcome, payload, error, written)


_CANCEL_NOTICED_AFTER_S: Final = 0.0005
"""A tool that ran longer is asked whether its call was cancelled meanwhile (the check costs ~2% of a
trivial call). A cancellation arriving during a shorter run leaves the event saying what the tool did,
succeeded, and the result unsent: the same as one arriving just after the result was sent."""

_CANCELLED = {
    False: "the call was cancelled (by the client or a stopping server) before its tool ran; nothing ran",
    True: "the call was cancelled (by the client or a stopping server) while its tool ran; the tool ran to its end",
}


class _StoreVisits:
    """A call's trips to the governance store, each one worker-thread hop.

    The first trip checks the holds (revocation, freeze) before it does anything else, so no
    approval is opened, no budget taken and no handler run for a held agent or environment,
    and a call that needs the store only to run pays for one hop in all.
    """

    def __init__(self, offload: Offload, holds: Holds, principal: Principal, environment: str, risk: Risk) -> None:
        self._offload = offload
        self._holds = holds
        self._principal = principal
        self._environment = environment
        self._risk = risk
        self._held_checked = False

    async def visit(self, fn: Callable[..., _T], *args: Any) -> _T:
        result: _T = await self._offload(self._after_holds, fn, *args)
        return result

    async def check_holds(self) -> None:
        if not self._held_checked:
            await self.visit(_nothing)

    def _after_holds(self, fn: Callable[..., _T], *args: Any) -> _T:
        if not self._held_checked:
            hold = self._holds.refusal(self._principal, self._environment, self._risk)
            if hold is not None:
                kind, message = hold
                raise _Refused(Outcome.REVOKED if kind is HoldKind.AGENT else Outcome.FROZEN, message)
            self._held_checked = True
        return fn(*args)


def _nothing() -> None:
    return None


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
    arguments: Mapping[str, Any]
    """As the agent sent them; redacted once, when the event is written."""
    sensitive_fields: Collection[str] = ()
    """The manifest's extra fields to redact, once the tool is known."""
    handler_started: bool = False
    on_written: Callable[[str], None] | None = None
    """What the session learns once the event is written (a read it made, its latest change); never, if it is not."""

    def finished(self, **fields: Any) -> EventRecord:
        """The event's record, built without the model (see ``cedargate.audit.record``)."""
        arguments = arguments_for_audit(self.arguments, self.sensitive_fields)
        return EventRecord.build({**self.fields, **fields, "arguments": arguments})

    @classmethod
    def start(cls, request: CallRequest) -> _EventDraft:
        event_id = new_event_id()
        p = request.principal
        return cls(
            event_id,
            {
                "event_id": event_id,
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "principal": _audit_principal(p),
                "session_id": request.session.id,
                "task": p.task,
                # Whole, as sent, unless an agent sent an unknown name longer than any argument kept whole
                # (an unknown name is redacted once it is known to be unknown, in `_governed`).
                "tool": clipped(request.tool, MAX_AUDIT_STRING),
                "traceparent": _valid_traceparent(request.traceparent),
            },
            request.arguments or {},
        )


@functools.lru_cache(maxsize=1024)
def _audit_principal(principal: Principal) -> AuditPrincipal:
    """The (immutable) audit view of a principal, built once: a server sees few principals, each many times."""
    return AuditPrincipal(
        agent=principal.agent, team=principal.team, on_behalf_of=principal.on_behalf_of, mode=principal.mode
    )


@functools.lru_cache(maxsize=4096)
def _audit_resource(type_name: str, resource_id: str) -> AuditResource:
    return AuditResource(type=type_name, id=resource_id)


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _valid_traceparent(value: str | None) -> str | None:
    """Only a well-formed W3C ``traceparent`` goes into the audit trail; anything else is dropped."""
    return value if value is not None and _TRACEPARENT.match(value) else None
