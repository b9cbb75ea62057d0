"""Who calls over streamable HTTP: the principal of the verified bearer token of this request.

The SDK's bearer middleware puts the verified token in the request scope; the principal is
mapped from its claims for every call (never from anything else the client sends). Without
auth configured (loopback serving only), the config principal stands, as over stdio.
``/mcp`` refuses a token whose claims name no whole principal before the MCP layer sees it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import ServerRequestContext
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cedargate.config import ClaimsConfig
from cedargate.identity import Principal
from cedargate.oauth import TokenClaimsError, principal_from_claims

logger = logging.getLogger(__name__)


def bearer_claims(ctx: ServerRequestContext[Any]) -> dict[str, Any] | None:
    """The verified claims of this request's bearer token, if the request came with one."""
    scope = getattr(ctx.request, "scope", None)
    return scope_claims(scope) if isinstance(scope, dict) else None


def scope_claims(scope: Scope) -> dict[str, Any] | None:
    """The verified claims the bearer middleware left in an ASGI scope, if any."""
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser) and user.access_token.claims is not None:
        return dict(user.access_token.claims)
    return None


def principal_for(
    ctx: ServerRequestContext[Any], fallback: Principal | None, claims_config: ClaimsConfig | None
) -> Principal:
    """The token's principal when the request carries one, else ``fallback`` (stdio, or HTTP without auth).

    Fails closed when neither exists: there is no anonymous agent.
    """
    claims = bearer_claims(ctx) if claims_config is not None else None
    if claims is None or claims_config is None:
        if fallback is None:
            raise PermissionError("no principal: this server takes its callers from bearer tokens only")
        return fallback
    try:
        return principal_from_claims(claims, claims_config)
    except TokenClaimsError as exc:  # ``PrincipalRequired`` refused such tokens; fail closed if one slips through
        raise PermissionError(str(exc)) from exc


def bearer_error(status: int, error: str, description: str, resource_metadata: str | None) -> Response:
    """An RFC 6750 refusal, shaped as the SDK's on ``/mcp``: a challenge pointing at the resource metadata."""
    # The header is latin-1 and quotes its parameters: the full description goes in the body.
    safe = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in description)
    parts = [f'error="{error}"', f'error_description="{safe}"']
    if resource_metadata is not None:
        parts.append(f'resource_metadata="{resource_metadata}"')
    return Response(
        json.dumps({"error": error, "error_description": description}),
        status_code=status,
        media_type="application/json",
        headers={"WWW-Authenticate": "Bearer " + ", ".join(parts)},
    )


class PrincipalRequired:
    """Wraps ``/mcp``: a verified token whose claims name no whole principal gets 401 with the reason.

    An approver's token (``sub`` and the admin scope only) is valid for ``/admin`` but names
    no agent, so it is refused here. Requests without a verified token pass on to the SDK's
    own check, which answers them 401.
    """

    def __init__(self, app: ASGIApp, claims: ClaimsConfig, resource_metadata: str) -> None:
        self._app = app
        self._claims = claims
        self._resource_metadata = resource_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        claims = scope_claims(scope) if scope["type"] == "http" else None
        if claims is not None:
            try:
                principal_from_claims(claims, self._claims)
            except TokenClaimsError as exc:
                logger.warning("bearer token refused on /mcp: %s", exc)
                refusal = bearer_error(401, "invalid_token", str(exc), self._resource_metadata)
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)
