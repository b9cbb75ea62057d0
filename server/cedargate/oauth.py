"""Bearer JWTs for streamable HTTP: verified against the issuer's JWKS, mapped to a principal.

cedargate is a resource server only: it never issues tokens and never passes them on (AWS
and the forge see the duty credentials, not the agent's token). A token is accepted only
when its signature checks against the issuer's published keys, ``iss`` is the issuer,
``aud`` is this server's resource URL, and ``exp``/``nbf`` hold; and only when its claims
name a whole principal. Anything else is refused before the pipeline is reached.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
import jwt
from mcp.server.auth.provider import AccessToken
from pydantic import ValidationError

from cedargate.config import AuthConfig, ClaimsConfig
from cedargate.identity import Principal

logger = logging.getLogger(__name__)


class JwtVerifier:
    """A ``TokenVerifier`` for the MCP SDK: signature, issuer, audience, expiry and principal claims."""

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
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            logger.info("bearer token refused: %s", exc)
            return None
        if principal_from_claims(claims, self._config.claims) is None:
            logger.info("bearer token refused: claims do not name a whole principal")
            return None
        scope = claims.get("scope")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]),
            resource=self._config.resource_url,
            subject=str(claims["sub"]),
            claims=claims,
        )


def principal_from_claims(claims: Mapping[str, Any], mapping: ClaimsConfig) -> Principal | None:
    """The principal a token's claims name; ``None`` when a required claim is missing or malformed.

    ``mode`` defaults to autonomous (the stricter one) and ``task`` to ``adhoc`` when absent.
    """
    try:
        return Principal(
            agent=claims[mapping.agent],
            team=claims[mapping.team],
            on_behalf_of=claims[mapping.on_behalf_of],
            mode=claims.get(mapping.mode, "autonomous"),
            task=claims.get(mapping.task, "adhoc"),
        )
    except (KeyError, ValidationError):
        return None
