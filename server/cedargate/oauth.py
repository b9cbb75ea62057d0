"""Bearer JWTs for streamable HTTP: verified against the issuer's JWKS, mapped to a principal.

cedargate is a resource server only: it never issues tokens and never passes them on (AWS
and the forge see the duty credentials, not the agent's token). A token is accepted only
when its signature checks against the issuer's published keys, ``iss`` is the issuer,
``aud`` is this server's resource URL, and ``exp``/``nbf`` hold. What a route needs beyond
that is the route's check: ``/mcp`` a whole principal in the claims (``http_identity``),
``/admin`` the user claim and the admin scopes (``admin_api``). Every refusal is logged at
WARNING with its reason; the client only learns that its token was refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import anyio.to_thread
import jwt
from mcp.server.auth.provider import AccessToken
from pydantic import TypeAdapter, ValidationError

from cedargate.config import AuthConfig, ClaimsConfig, Identifier
from cedargate.errors import CedargateError, quoted
from cedargate.identity import Principal

logger = logging.getLogger(__name__)

CLOCK_LEEWAY_SECONDS: Final = 30
"""Clock skew allowed against the issuer, the same both ways: on ``nbf`` and on ``exp``."""
ID_RULE: Final = "ids are up to 128 letters, digits and `._@/:-`, starting with a letter or digit"
_IDENTIFIER: Final = TypeAdapter(Identifier)


class TokenClaimsError(CedargateError):
    """A verified token's claims do not name what the route needs (a principal, an approver)."""


class JwtVerifier:
    """A ``TokenVerifier`` for the MCP SDK: signature, issuer, audience, expiry; logs why it refuses."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        self._keys = jwt.PyJWKClient(config.jwks_url, cache_jwk_set=True, lifespan=300)

    async def verify_token(self, token: str) -> AccessToken | None:
        return await anyio.to_thread.run_sync(self.verify, token)

    def verify(self, token: str) -> AccessToken | None:
        """The access token, or ``None`` (a 401) for any token that fails a check."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(self._config.algorithms),
                audience=self._config.resource_url,
                issuer=self._config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
                leeway=CLOCK_LEEWAY_SECONDS,
            )
        except jwt.PyJWTError as exc:
            logger.warning("bearer token refused: %s", self._reason(exc))
            return None
        scope = claims.get("scope")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
            scopes=scope.split() if isinstance(scope, str) else [],
            # The SDK compares this with its clock without leeway; the leeway ``nbf`` gets, ``exp`` gets too.
            expires_at=int(claims["exp"]) + CLOCK_LEEWAY_SECONDS,
            resource=self._config.resource_url,
            subject=session_subject(claims, self._config.claims),
            claims=claims,
        )

    def _reason(self, exc: jwt.PyJWTError) -> str:
        """What failed, in words an operator can act on."""
        config = self._config
        reasons: dict[type[jwt.PyJWTError], str] = {
            jwt.ExpiredSignatureError: f"expired (`exp` is more than {CLOCK_LEEWAY_SECONDS} s past)",
            jwt.ImmatureSignatureError: f"not yet valid (`nbf` or `iat` more than {CLOCK_LEEWAY_SECONDS} s ahead)",
            jwt.InvalidAudienceError: f"audience (`aud`) is not `{config.resource_url}`",
            jwt.InvalidIssuerError: f"issuer (`iss`) is not `{config.issuer}`",
            jwt.InvalidSignatureError: f"signature does not verify against the keys at `{config.jwks_url}`",
            jwt.InvalidAlgorithmError: f"signed with an algorithm not in `algorithms` ({', '.join(config.algorithms)})",
            jwt.PyJWKClientError: f"no signing key for it at `{config.jwks_url}`: {exc}",
        }
        for kind, reason in reasons.items():
            if isinstance(exc, kind):
                return reason
        return str(exc) or type(exc).__name__


def session_subject(claims: Mapping[str, Any], mapping: ClaimsConfig) -> str:
    """Whom the SDK binds a streamable-HTTP session to: the whole principal, not ``sub`` alone.

    The SDK lets only the (client_id, iss, subject) that opened a session use it; with the
    whole principal as subject, a token of the same ``sub`` for another human, team, mode or
    task cannot reach (or DELETE) a session it did not open. A token naming no principal
    (an approver's) is bound by ``sub``; ``/mcp`` refuses it anyway.
    """
    try:
        principal = principal_from_claims(claims, mapping)
    except TokenClaimsError:
        return str(claims["sub"])
    return json.dumps(principal.model_dump(), sort_keys=True)


def principal_from_claims(claims: Mapping[str, Any], mapping: ClaimsConfig) -> Principal:
    """The principal a token's claims name; fails naming the claim that is missing or not an id.

    ``mode`` defaults to autonomous (the stricter one) and ``task`` to ``adhoc`` when absent.
    Every part must be an id as the config writes them (no empty, blank or control-character
    value), so whatever can call can be named in budgets, groups and ``cedargate revoke``.
    """
    mode = claims.get(mapping.mode, "autonomous")
    if mode not in ("interactive", "autonomous"):
        raise TokenClaimsError(f"token claim `{mapping.mode}` (mode) is {_shown(mode)}: use interactive or autonomous")
    return Principal(
        agent=claim_id(claims, mapping.agent, "agent"),
        team=claim_id(claims, mapping.team, "team"),
        on_behalf_of=claim_id(claims, mapping.on_behalf_of, "on_behalf_of"),
        mode=mode,
        task=claim_id(claims, mapping.task, "task", default="adhoc"),
    )


def claim_id(claims: Mapping[str, Any], name: str, part: str, default: str | None = None) -> str:
    """The id in claim ``name`` (which names ``part``); fails when it is missing or no id."""
    value = claims.get(name, default)
    if value is None:
        raise TokenClaimsError(f"token claim `{name}` ({part}) is missing; the issuer must set it, see [auth.claims]")
    try:
        return _IDENTIFIER.validate_python(value, strict=True)
    except ValidationError:
        raise TokenClaimsError(f"token claim `{name}` ({part}) is {_shown(value)}, not an id: {ID_RULE}") from None


def _shown(value: Any) -> str:
    """A claim value quoted for a message or log line, control characters escaped."""
    return quoted(json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else repr(value)[1:-1])
