"""The streamable HTTP app: the MCP endpoint, and with ``[auth]`` bearer auth and the admin API.

With ``[auth]`` configured, ``/mcp`` answers 401 (with the ``resource_metadata`` pointer)
to requests without a valid token or whose token names no whole principal,
``/.well-known/oauth-protected-resource`` publishes the resource metadata,
``/admin/approvals`` serves the queue and ``/admin/audit/sinks`` the secondary audit sinks'
health. Without it, HTTP serves only on loopback, with the config principal, as stdio does.
A loopback server checks ``Host`` and ``Origin`` on every request (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from mcp.server import Server
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.routing import Route

from cedargate.admin_api import AdminGate, admin_routes, audit_routes
from cedargate.approvals import ApprovalQueue
from cedargate.config import AuthConfig, Config
from cedargate.errors import ConfigError
from cedargate.http_identity import PrincipalRequired
from cedargate.oauth import JwtVerifier
from cedargate.runtime import Runtime

MCP_PATH = "/mcp"


def refuse_open_http(config: Config, host: str) -> None:
    """Refuse serving HTTP beyond loopback without bearer auth; checked before the port is bound."""
    if config.auth is None and not is_loopback(host):
        raise ConfigError(
            f"serving HTTP on `{host}` needs bearer auth: add an [auth] table (issuer, jwks_url, resource_url) "
            "to the config, or bind to 127.0.0.1"
        )


def build_http_app(server: Server[Any], runtime: Runtime, host: str, port: int) -> Starlette:
    """The ASGI app ``serve --transport http`` serves on ``host:port``; refuses non-loopback serving without auth."""
    app = server.streamable_http_app(
        host=host, transport_security=loopback_security(host, port), **http_app_options(runtime, host)
    )
    auth = runtime.config.auth
    if auth is not None:
        _wrap_mcp_route(app, auth)
    return app


def http_app_options(runtime: Runtime, host: str) -> dict[str, Any]:
    """Keyword arguments for ``Server.streamable_http_app``; refuses non-loopback serving without auth."""
    refuse_open_http(runtime.config, host)
    auth = runtime.config.auth
    if auth is None:
        return {}
    options: dict[str, Any] = {
        "token_verifier": JwtVerifier(auth),
        "auth": AuthSettings(
            issuer_url=auth.issuer,  # type: ignore[arg-type]  # validated as a URL at load, kept as written
            resource_server_url=auth.resource_url,  # type: ignore[arg-type]
            required_scopes=list(auth.required_scopes) or None,
            validate_token_resource=True,
        ),
    }
    gate = AdminGate(auth, resource_metadata_url(auth))
    routes = audit_routes(runtime.audit, gate)
    if runtime.store is not None:
        routes += admin_routes(ApprovalQueue(runtime.store, runtime.config.approvals), gate)
    options["custom_starlette_routes"] = routes
    return options


def resource_metadata_url(auth: AuthConfig) -> str:
    """Where the resource metadata is published, as every 401's challenge points."""
    return str(build_resource_metadata_url(AnyHttpUrl(auth.resource_url)))


def loopback_security(host: str, port: int) -> TransportSecuritySettings | None:
    """DNS-rebinding protection for a loopback ``host``: only ``Host``/``Origin`` naming it (and ``port``) pass.

    A page on another site that rebinds its name to a loopback address would otherwise drive
    an auth-less server from the browser. Beyond loopback, bearer auth stands in for it
    (a browser sends no token it was not given).
    """
    if not is_loopback(host):
        return None
    names = {"localhost", "127.0.0.1", "[::1]"} if host == "localhost" else {url_host(host), "localhost"}
    hosts = sorted(f"{name}:{port}" for name in names)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{name}" for name in hosts],
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _wrap_mcp_route(app: Starlette, auth: AuthConfig) -> None:
    """Put ``PrincipalRequired`` in front of the SDK's ``/mcp`` endpoint (behind the app's bearer middleware)."""
    for route in app.router.routes:
        if isinstance(route, Route) and route.path == MCP_PATH:
            route.app = PrincipalRequired(route.app, auth.claims, resource_metadata_url(auth))
            return
    raise RuntimeError(f"the streamable HTTP app has no `{MCP_PATH}` route to guard")
