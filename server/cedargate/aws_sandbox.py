"""The embedded sandbox: moto in-process, seeded once with an estate, plus its trail.

moto keeps one state per account id; assuming a role in another account id moves a client
into that account, exactly as STS would. The sandbox seeds every configured account lazily,
on the first AWS call, so servers that only use repository tools pay nothing for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from cedargate.aws_estate import seed_account
from cedargate.aws_trail import SandboxTrail

if TYPE_CHECKING:
    from cedargate.aws_session import AwsClients

PROD_ACCOUNT: Final = "482910375516"
STAGING_ACCOUNT: Final = "739164028253"
"""The demo's two seeded accounts; any configured account id works the same way."""


class Sandbox:
    """The moto mock and the trail for one ``AwsClients``."""

    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients
        self.trail = SandboxTrail()
        self._mock: Any = None
        self._seeded = False
        self._lock = threading.Lock()

    def start(self) -> None:
        from moto import mock_aws

        self._mock = mock_aws()
        self._mock.start()

    @property
    def seeded(self) -> bool:
        return self._seeded

    def ensure_seeded(self) -> None:
        """Create each configured account's duty roles and estate, once."""
        with self._lock:
            if self._seeded:
                return
            config = self._clients.config
            for account in config.accounts:
                seed_account(self._clients, account, config.duties, self.trail)
            self._seeded = True

    def stop(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
