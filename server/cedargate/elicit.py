"""Interactive self-approval: asking the human at the keyboard through MCP elicitation.

Used if and only if the policies holding a call back carry ``@self_approval``, the principal
is interactive, and the connected client declared the elicitation capability; everything
else waits in the out-of-band queue. The pending approval is opened first, exactly as for
the queue; a "yes" from the human grants it (approver: the human the agent acts for) and
the call is run again with it, so the audit trail shows the request, who approved and the
execution. Handshake-era connections get a mid-call ``elicitation/create``; 2026-07-28
connections get an ``InputRequiredResult`` whose ``request_state`` is the approval id (the
store, not the state, carries what was asked, so any replica can take the retry).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio.to_thread
import mcp_types as types
from mcp.server.context import ServerRequestContext

from cedargate.approvals import Approval, ApprovalQueue
from cedargate.audit.event import Outcome
from cedargate.errors import ApprovalError
from cedargate.identity import Principal
from cedargate.pipeline import CallRequest, CallResult
from cedargate.protocol_era import is_handshake_era

_log = logging.getLogger(__name__)

INPUT_KEY = "cedargate-approval"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean", "title": "Approve", "description": "run this call once, as shown"},
    },
    "required": ["approve"],
}


def self_approval_candidate(result: CallResult, ctx: ServerRequestContext[Any]) -> str | None:
    """The pending approval to ask the human about, or ``None`` when the queue must decide."""
    if result.outcome is not Outcome.APPROVAL_REQUIRED:
        return None  # checked first: most calls are not waiting, and reading ``event`` copies it
    event = result.event
    if event is None or event.approval is None:
        return None
    if not event.approval.self_approvable or event.approval.status != "pending":
        return None
    return event.approval.id if asks_in_forms(ctx.session.client_capabilities) else None


def asks_in_forms(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the client can show a form: its elicitation capability names forms, or no mode at all.

    A client that declared URL mode only must not be sent a form (the spec forbids modes a
    client did not declare); an empty ``elicitation: {}`` means forms, as before modes existed.
    """
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None:
        return False
    return elicitation.form is not None or elicitation.url is None


def question(approval: Approval) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(approval.arguments.items()))
    return (
        f"Agent `{approval.agent}` asks to run `{approval.tool}` on {approval.resource} ({args}). "
        f"Policy: {approval.reason}. Approve this one call?"
    )


def input_required(approval: Approval) -> types.InputRequiredResult:
    request = types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=question(approval), requested_schema=SCHEMA)
    )
    return types.InputRequiredResult(input_requests={INPUT_KEY: request}, request_state=approval.id)


async def ask(ctx: ServerRequestContext[Any], approval: Approval) -> types.ElicitResult | None:
    """The human's answer; ``None`` when the client failed to ask (the call then waits in the queue).

    A client's error or malformed answer is its own failure, not the call's: it must not turn
    the agent's ``tools/call`` into a protocol error that hides the pending approval.
    """
    try:
        return await ctx.session.elicit_form(question(approval), SCHEMA, related_request_id=ctx.request_id)
    except Exception as exc:  # the SDK's MCPError, or a validation error of the client's answer
        _log.warning("the client could not ask about approval %s (%s); it waits in the queue", approval.id, exc)
        return None


def accepted(answer: object) -> bool:
    """Only an explicit accept with ``approve: true`` counts; decline, cancel or anything else does not."""
    return (
        isinstance(answer, types.ElicitResult)
        and answer.action == "accept"
        and (answer.content or {}).get("approve") is True
    )


def grant(queue: ApprovalQueue, approval_id: str, principal: Principal) -> bool:
    """Record the human's yes; ``False`` (and the call stays waiting) when the approval cannot take it."""
    try:
        queue.self_approve(approval_id, principal.agent, principal.on_behalf_of)
    except ApprovalError:
        return False
    return True


async def call_with_self_approval(
    ctx: ServerRequestContext[Any],
    params: types.CallToolRequestParams,
    request: CallRequest,
    queue: ApprovalQueue,
    call: Callable[[CallRequest], Awaitable[CallResult]],
) -> CallResult | types.InputRequiredResult:
    """Run the call; where policy and client allow it, ask the human instead of leaving it in the queue."""
    answered = params.request_state is not None and params.input_responses is not None
    if params.request_state and params.input_responses is not None:
        # 2026-07-28 retry: the human answered the question this server asked about that approval.
        if accepted(params.input_responses.get(INPUT_KEY)):
            await anyio.to_thread.run_sync(grant, queue, params.request_state, request.principal)
        request = replace(request, approval_id=params.request_state)
    result = await call(request)
    approval_id = None if answered else self_approval_candidate(result, ctx)
    if approval_id is None:
        return result
    # Store reads and writes leave the event loop, as the pipeline's do.
    approval = await anyio.to_thread.run_sync(queue.get, approval_id)
    if not is_handshake_era(ctx):
        return input_required(approval)
    if accepted(await ask(ctx, approval)) and await anyio.to_thread.run_sync(
        grant, queue, approval_id, request.principal
    ):
        result = await call(replace(request, approval_id=approval_id))
    return result
