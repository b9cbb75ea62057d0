"""The approvals queue and the audit sinks' health over HTTP, for people not on the server.

    GET  /admin/approvals[?status=pending|approved|denied|consumed|expired|all]
    GET  /admin/approvals/{id}
    POST /admin/approvals/{id}/approve   body: {"note": "..."} or none
    POST /admin/approvals/{id}/deny      body: as approve

A decision answers 400 for a body that is not a JSON object or a ``note`` that is not a
string, 404 for an unknown approval or action, 403 when the approver may not decide it (their
own request, or not in every approver group) and 409 when its state forbids it (not pending).
    GET  /admin/audit/sinks              each secondary sink: delivered, pending, failures, lost, last error

Only mounted when bearer auth is configured. Every request needs a verified token that
carries every ``[auth] admin_scopes`` scope (403 ``insufficient_scope`` naming the one
missing) and whose user claim is an id (401 otherwise); a delegated token (an ``act`` claim,
RFC 8693: someone acting for the user) is refused, since an approval is the human's own act.
An agent's ``/mcp`` token has none of this: its ``sub`` may well be an approver's name. The
approver is the user claim of the verified token, never a name the client sends; the queue
applies the same checks as the CLI. A secondary sink's health lives in the serving process,
so this is where it can be read.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.audit.fanout import FanoutAudit
from cedargate.config import AuthConfig
from cedargate.errors import ApprovalError
from cedargate.http_identity import bearer_error, scope_claims
from cedargate.oauth import TokenClaimsError, claim_id

logger = logging.getLogger(__name__)

AdminHandler = Callable[[Request, str], Awaitable[Response]]
"""An admin endpoint, given the request and the approver (the token's user claim)."""


class AdminGate:
    """Who may use ``/admin``: checked before any endpoint runs, failing closed."""

    def __init__(self, auth: AuthConfig, resource_metadata: str) -> None:
        self._auth = auth
        self._resource_metadata = resource_metadata

    def guard(self, handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` as a Starlette endpoint that runs only for a token the gate lets in."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            user = self._approver(request)
            if isinstance(user, Response):
                return user
            return await handler(request, user)

        return endpoint

    def _approver(self, request: Request) -> str | Response:
        claims = scope_claims(request.scope)
        if claims is None:  # no token, or one the verifier refused (and logged why)
            return bearer_error(401, "invalid_token", "a valid bearer token is required", self._resource_metadata)
        try:
            user = claim_id(claims, self._auth.claims.user, "user, the approver")
        except TokenClaimsError as exc:
            return self._refused(401, "invalid_token", str(exc))
        if "act" in claims:
            return self._refused(
                403, "invalid_token", "a delegated token (`act` claim) cannot use the admin API: use your own token"
            )
        held = set(claims.get("scope", "").split()) if isinstance(claims.get("scope"), str) else set()
        for scope in self._auth.admin_scopes:
            if scope not in held:
                return self._refused(403, "insufficient_scope", f"Required scope: {scope}")
        return user

    def _refused(self, status: int, error: str, description: str) -> Response:
        logger.warning("admin API refused a bearer token: %s", description)
        return bearer_error(status, error, description, self._resource_metadata)


def audit_routes(audit: FanoutAudit, gate: AdminGate) -> list[Route]:
    async def sinks(request: Request, user: str) -> Response:
        return JSONResponse({"sinks": [status.model_dump(mode="json") for status in audit.status()]})

    return [Route("/admin/audit/sinks", gate.guard(sinks), methods=["GET"])]


def admin_routes(queue: ApprovalQueue, gate: AdminGate) -> list[Route]:
    async def listing(request: Request, user: str) -> JSONResponse:
        raw = request.query_params.get("status", "pending")
        if raw != "all" and raw not in ApprovalStatus.__members__.values():
            return JSONResponse({"error": f"unknown status `{raw}`"}, status_code=400)
        status = None if raw == "all" else ApprovalStatus(raw)
        found = await anyio.to_thread.run_sync(queue.list, status)
        return JSONResponse([a.model_dump(mode="json") for a in found])

    async def show(request: Request, user: str) -> JSONResponse:
        try:
            approval = await anyio.to_thread.run_sync(queue.get, request.path_params["id"])
            return JSONResponse(approval.model_dump(mode="json"))
        except ApprovalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    async def decide(request: Request, user: str) -> JSONResponse:
        approval_id = request.path_params["id"]
        verb = request.path_params["verb"]
        if verb not in ("approve", "deny"):
            return JSONResponse({"error": f"unknown action `{verb}`: use approve or deny"}, status_code=404)
        try:
            note = _note(await request.body())
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            await anyio.to_thread.run_sync(queue.get, approval_id)
        except ApprovalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        decide = functools.partial(queue.decide, approval_id, user, approve=verb == "approve", note=note)
        try:
            approval = await anyio.to_thread.run_sync(decide)
        except ApprovalError as exc:
            status = await anyio.to_thread.run_sync(_refusal_status, queue, approval_id, user)
            return JSONResponse({"error": str(exc)}, status_code=status)
        return JSONResponse(approval.model_dump(mode="json"))

    return [
        Route("/admin/approvals", gate.guard(listing), methods=["GET"]),
        Route("/admin/approvals/{id}", gate.guard(show), methods=["GET"]),
        Route("/admin/approvals/{id}/{verb:str}", gate.guard(decide), methods=["POST"]),
    ]


class BodyError(ValueError):
    """A decision's body that cannot be read as the API documents it; nothing is decided."""


def _note(body: bytes) -> str:
    """The approver's note from a decision's body (empty, or a JSON object whose ``note`` is optional).

    A body that is not what the API takes is refused rather than read as "no note": a client
    that sent something else meant something else, and a decision is not taken on a guess.
    """
    if not body.strip():
        return ""
    try:
        data: Any = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise BodyError(
            'body is not JSON: send a JSON object such as {"note": "..."}, or no body; nothing was decided'
        ) from None
    if not isinstance(data, dict):
        raise BodyError(
            f'body is {_json_kind(data)}, not a JSON object: send {{"note": "..."}}, or no body; nothing was decided'
        )
    note = data.get("note")
    if note is None:
        return ""
    if not isinstance(note, str):
        raise BodyError(f"`note` must be a string, not {_json_kind(note)}; nothing was decided")
    return note


def _json_kind(value: Any) -> str:
    """``value``'s JSON type, as an error names it."""
    if isinstance(value, bool):  # before int: a bool is an int in Python, not a number in JSON
        return "a boolean"
    names = {int: "a number", float: "a number", str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), "null")


def _refusal_status(queue: ApprovalQueue, approval_id: str, user: str) -> int:
    """403 when ``user`` may not decide the approval at all; 409 when its state forbids it (no longer pending).

    Judged again from the approval and the config, not from the error's wording: who may
    decide is the queue's public rule (the requester and their human never, members of every
    approver group only), and any other refusal is a conflict with the approval's state.
    """
    try:
        approval = queue.get(approval_id)
    except ApprovalError:
        return 409  # it existed a moment ago: gone meanwhile is a conflict, not a permission
    if user in (approval.agent, approval.on_behalf_of) or queue.groups_missing(user, approval.approver_groups):
        return 403
    return 409
