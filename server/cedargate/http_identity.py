"""Who calls over streamable HTTP: the principal of the verified bearer token of this request.

The SDK's bearer middleware puts the verified token in the request scope; the principal is
mapped from its claims for every call (never from anything else the client sends). Without
auth configured (loopback serving only), the config principal stands, as over stdio.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import ServerRequestContext

from cedargate.config import ClaimsConfig
from cedargate.identity import Principal
from cedargate.oauth import principal_from_claims


def bearer_claims(ctx: ServerRequestContext[Any]) -> dict[str, Any] | None:
    """The verified claims of this request's bearer token, if the request came with one."""
    scope = getattr(ctx.request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
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
    principal = principal_from_claims(claims, claims_config)
    if principal is None:  # the verifier already refused such tokens; fail closed if one slips through
        raise PermissionError("bearer token claims do not name a principal")
    return principal
