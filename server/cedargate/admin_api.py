"""The approvals queue and the audit sinks' health over HTTP, for people not on the server.

    GET  /admin/approvals[?status=pending|approved|denied|consumed|expired|all]
    GET  /admin/approvals/{id}
    POST /admin/approvals/{id}/approve   body: {"note": "..."} (optional)
    POST /admin/approvals/{id}/deny
    GET  /admin/audit/sinks              each secondary sink: delivered, pending, failures, lost, last error

Only mounted when bearer auth is configured: the approver is the user claim of the request's
verified token, never a name the client sends; the queue applies the same checks as the CLI.
A secondary sink's health lives in the serving process, so this is where it can be read.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio.to_thread
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.audit.fanout import FanoutAudit
from cedargate.errors import ApprovalError


def _user_of(request: Request, user_claim: str) -> str | None:
    user = request.scope.get("user")
    if not isinstance(user, AuthenticatedUser) or user.access_token.claims is None:
        return None
    value = user.access_token.claims.get(user_claim)
    return value if isinstance(value, str) and value else None


def _unauthorized() -> JSONResponse:
    return JSONResponse(
        {"error": "a valid bearer token is required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def audit_routes(audit: FanoutAudit, user_claim: str) -> list[Route]:
    async def sinks(request: Request) -> JSONResponse:
        if _user_of(request, user_claim) is None:
            return _unauthorized()
        return JSONResponse({"sinks": [status.model_dump(mode="json") for status in audit.status()]})

    return [Route("/admin/audit/sinks", sinks, methods=["GET"])]


def admin_routes(queue: ApprovalQueue, user_claim: str) -> list[Route]:
    async def listing(request: Request) -> JSONResponse:
        if _user_of(request, user_claim) is None:
            return _unauthorized()
        raw = request.query_params.get("status", "pending")
        if raw != "all" and raw not in ApprovalStatus.__members__.values():
            return JSONResponse({"error": f"unknown status `{raw}`"}, status_code=400)
        status = None if raw == "all" else ApprovalStatus(raw)
        found = await anyio.to_thread.run_sync(queue.list, status)
        return JSONResponse([a.model_dump(mode="json") for a in found])

    async def show(request: Request) -> JSONResponse:
        if _user_of(request, user_claim) is None:
            return _unauthorized()
        try:
            approval = await anyio.to_thread.run_sync(queue.get, request.path_params["id"])
            return JSONResponse(approval.model_dump(mode="json"))
        except ApprovalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    async def decide(request: Request) -> JSONResponse:
        user = _user_of(request, user_claim)
        if user is None:
            return _unauthorized()
        approval_id = request.path_params["id"]
        note = _note(await request.body())
        verb = request.path_params["verb"]
        if verb not in ("approve", "deny"):
            return JSONResponse({"error": f"unknown action `{verb}`: use approve or deny"}, status_code=404)
        try:
            await anyio.to_thread.run_sync(queue.get, approval_id)
        except ApprovalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        decide = functools.partial(queue.decide, approval_id, user, approve=verb == "approve", note=note)
        try:
            approval = await anyio.to_thread.run_sync(decide)
        except ApprovalError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        return JSONResponse(approval.model_dump(mode="json"))

    return [
        Route("/admin/approvals", listing, methods=["GET"]),
        Route("/admin/approvals/{id}", show, methods=["GET"]),
        Route("/admin/approvals/{id}/{verb:str}", decide, methods=["POST"]),
    ]


def _note(body: bytes) -> str:
    try:
        data: Any = json.loads(body) if body else {}
    except ValueError:
        return ""
    note = data.get("note") if isinstance(data, dict) else None
    return note if isinstance(note, str) else ""
