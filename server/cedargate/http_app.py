"""What the streamable HTTP app needs beyond the MCP endpoint: bearer auth and the admin API.

With ``[auth]`` configured, ``/mcp`` answers 401 (with the ``resource_metadata`` pointer)
to requests without a valid token, ``/.well-known/oauth-protected-resource`` publishes the
resource metadata, ``/admin/approvals`` serves the queue and ``/admin/audit/sinks`` the
secondary audit sinks' health. Without it, HTTP serves only on loopback, with the config
principal, as stdio does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from mcp.server.auth.settings import AuthSettings

from cedargate.admin_api import admin_routes, audit_routes
from cedargate.approvals import ApprovalQueue
from cedargate.config import Config
from cedargate.errors import ConfigError
from cedargate.oauth import JwtVerifier
from cedargate.runtime import Runtime


def refuse_open_http(config: Config, host: str) -> None:
    """Refuse serving HTTP beyond loopback without bearer auth; checked before the port is bound."""
    if config.auth is None and not _is_loopback(host):
        raise ConfigError(
            f"serving HTTP on `{host}` needs bearer auth: add an [auth] table (issuer, jwks_url, resource_url) "
            "to the config, or bind to 127.0.0.1"
        )


def http_app_options(runtime: Runtime, host: str) -> dict[str, Any]:
    """Keyword arguments for ``Server.streamable_http_app``; refuses non-loopback serving without auth."""
    refuse_open_http(runtime.config, host)
    auth = runtime.config.auth
    if auth is None:
        return {}
    options: dict[str, Any] = {
        "token_verifier": JwtVerifier(auth),
        "auth": AuthSettings(
            issuer_url=auth.issuer,  # type: ignore[arg-type]
            resource_server_url=auth.resource_url,  # type: ignore[arg-type]
            required_scopes=list(auth.required_scopes) or None,
            validate_token_resource=True,
        ),
    }
    routes = audit_routes(runtime.audit, auth.claims.user)
    if runtime.store is not None:
        routes += admin_routes(ApprovalQueue(runtime.store, runtime.config.approvals), auth.claims.user)
    options["custom_starlette_routes"] = routes
    return options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
