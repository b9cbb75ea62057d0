"""Where AWS calls go: the embedded sandbox account (moto, in-process) or the real cloud.

The handler code path is the same in both: a boto3 client from ``AwsClients.client``. In the
sandbox, moto intercepts botocore below boto3, so nothing leaves the process, and the
sandbox keeps a trail of the calls so ``cloudtrail:LookupEvents`` has something to show.
Every client names cedargate, its version and the agent in its user agent, and retries
throttling with botocore's standard retry mode.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
from botocore.config import Config as BotoConfig

from cedargate import __version__
from cedargate.aws_model import new_botocore_session
from cedargate.config import AwsConfig
from cedargate.progress import ProgressReport, no_progress

if TYPE_CHECKING:
    from cedargate.aws_sandbox import Sandbox

SANDBOX_ACCOUNT: Final = "123456789012"
"""The sandbox's own identity (moto's default account): where cedargate assumes duty roles from."""
_SANDBOX_CREDENTIALS: Final = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
_CLIENT_CACHE_SIZE: Final = 256


@dataclass(frozen=True)
class AwsCredentials:
    """Temporary credentials of one assumed duty role; kept in the server, never shown to an agent."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime

    def as_client_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


@dataclass(frozen=True)
class TrailIdentity:
    """Who a client acts as, for the sandbox trail's ``userIdentity`` (unused against real AWS)."""

    account: str
    username: str
    arn: str


class AwsClients:
    """Hands out boto3 clients for one backend; starts the moto sandbox when that is the backend."""

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self.region = config.region
        self.backend: Literal["sandbox", "real"] = choose_backend(config)
        self.sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._session: boto3.Session | None = None
        if self.backend == "sandbox":
            from cedargate.aws_sandbox import Sandbox  # imported lazily: real deployments never load moto

            self.sandbox = Sandbox(self)
            self.sandbox.start()

    def ensure_ready(self, progress: ProgressReport = no_progress) -> None:
        """Seed the sandbox estate on first use (a no-op against real AWS), saying so while it takes."""
        if self.sandbox is not None:
            if not self.sandbox.seeded:
                progress(0, None, "seeding the embedded sandbox's accounts (first AWS call; about 10 s)")
            self.sandbox.ensure_seeded()

    def client(
        self,
        service: str,
        *,
        region: str | None = None,
        credentials: AwsCredentials | None = None,
        agent: str = "",
        trail: TrailIdentity | None = None,
    ) -> Any:
        """A (cached) client; ``credentials`` None means the server's own identity."""
        region = region or self.region
        key_id = credentials.access_key_id if credentials else ""
        key = (service, region, key_id, agent, trail.account if trail else "")
        with self._lock:  # boto3 sessions are not thread-safe to create clients from
            cached = self._clients.get(key)
            if cached is not None:
                self._clients.move_to_end(key)
                return cached
            if credentials is not None:
                secrets = credentials.as_client_kwargs()
            else:
                secrets = _SANDBOX_CREDENTIALS if self.backend == "sandbox" else {}
            client = self._boto_session().client(
                service,
                region_name=region,
                endpoint_url=self.config.endpoint_url,
                config=_boto_config(self.config, agent),
                **secrets,
            )
            if self.sandbox is not None:
                self.sandbox.instrument(client, trail)
            self._clients[key] = client
            if len(self._clients) > _CLIENT_CACHE_SIZE:
                self._clients.popitem(last=False)
            return client

    def _boto_session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(region_name=self.region, botocore_session=new_botocore_session())
        return self._session

    def close(self) -> None:
        with self._lock:
            self._clients.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None


def user_agent_extra(agent: str) -> str:
    """``cedargate/VERSION agent/NAME``: the cloud's own trail can attribute the call."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", agent)[:64] or "unknown"
    return f"cedargate/{__version__} agent/{safe}"


def _boto_config(config: AwsConfig, agent: str) -> BotoConfig:
    """Timeouts and retries from the config: a slow or dead endpoint becomes an audited tool error.

    S3 never follows an ARN's region: a call goes to the region the policy decided on, and an
    access-point ARN elsewhere is an error rather than a request to that region.
    """
    return BotoConfig(
        user_agent_extra=user_agent_extra(agent),
        s3={"use_arn_region": False},
        retries={"mode": "standard", "total_max_attempts": config.max_attempts + 1},
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )


def choose_backend(config: AwsConfig) -> Literal["sandbox", "real"]:
    """Where AWS calls go: ``aws.mode``, and for ``auto`` the real cloud only when credentials are found."""
    if config.mode != "auto":
        return config.mode
    return "real" if boto3.Session().get_credentials() is not None else "sandbox"
