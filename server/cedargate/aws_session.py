"""Where AWS calls go: the embedded sandbox account (moto, in-process) or the real cloud.

The handler code path is the same in both: a boto3 client from ``AwsClients.client``. In the
sandbox, moto intercepts botocore below boto3, so nothing leaves the process.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import boto3
from botocore.config import Config as BotoConfig

from cedargate.config import AwsConfig

SANDBOX_ACCOUNT = "123456789012"
_SANDBOX_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


class AwsClients:
    """Hands out boto3 clients for one backend; starts the moto sandbox when that is the backend."""

    def __init__(self, config: AwsConfig) -> None:
        self.region = config.region
        self.backend: Literal["sandbox", "real"] = _choose_backend(config)
        self._mock: Any = None
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        if self.backend == "sandbox":
            from moto import mock_aws  # imported lazily: real deployments never load moto

            self._mock = mock_aws()
            self._mock.start()

    def client(self, service: str) -> Any:
        """One client per service, made on first use (making one costs tens of ms; clients are thread-safe)."""
        with self._lock:  # boto3's default session is not thread-safe to create clients from
            cached = self._clients.get(service)
            if cached is not None:
                return cached
            session = boto3.Session(
                region_name=self.region, **(_SANDBOX_CREDENTIALS if self.backend == "sandbox" else {})
            )
            client = self._clients[service] = session.client(
                service, config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=20)
            )
            return client

    def close(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None


def _choose_backend(config: AwsConfig) -> Literal["sandbox", "real"]:
    if config.mode != "auto":
        return config.mode
    return "real" if boto3.Session().get_credentials() is not None else "sandbox"
