"""Duty identities: every AWS call runs as its manifest's duty role, assumed for one principal.

Each call assumes the duty's role with STS AssumeRole, with a role session name and session
tags naming the agent, the human it acts for, the team and the task, so the cloud's own
trail attributes the call. Credentials are cached per (duty, principal, account) until
shortly before they expire. Security invariants: a cache entry is never shared across
principals (the whole principal is part of the key); a call runs only in the account the
policy decided on (a duty role in another account, or an assumed role that turns out to be
in one, is refused); and credentials never leave this module except as a boto3 client's
configuration; the agent and the audit trail see only the role, the session name and the tags.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from cedargate.aws_session import SANDBOX_ACCOUNT, AwsClients, AwsCredentials, TrailIdentity
from cedargate.config import AwsDutyConfig
from cedargate.errors import HandlerError
from cedargate.identity import Principal

REFRESH_MARGIN: Final = timedelta(minutes=5)
"""Credentials this close to expiry are replaced before use."""
SESSION_TAG_KEYS: Final = {
    "agent": "cedargate:agent",
    "on_behalf_of": "cedargate:user",
    "team": "cedargate:team",
    "task": "cedargate:task",
}
SERVER_IDENTITY_ARN: Final = f"arn:aws:iam::{SANDBOX_ACCOUNT}:user/cedargate-server"
_SESSION_NAME_UNSAFE: Final = re.compile(r"[^\w+=,.@-]")
_TAG_VALUE_UNSAFE: Final = re.compile(r"[^\w .:/=+@-]")
_ARN_ACCOUNT: Final = re.compile(r"^arn:[^:]*:[^:]*:[^:]*:(?P<account>[^:]*):")
OTHER_ACCOUNT_CODE: Final = "DutyRoleInOtherAccount"
"""The ``aws_error_code`` audited when a duty's role is not in the account the call targets."""

Clock = Callable[[], datetime]


class AssumeRoleError(HandlerError):
    """STS refused to hand out a duty's credentials; carries what the audit event records."""

    def __init__(self, message: str, duty: str, role_arn: str, code: str) -> None:
        super().__init__(message)
        self.duty = duty
        self.role_arn = role_arn
        self.code = code


@dataclass(frozen=True)
class DutySession:
    """One assumed duty role for one principal in one account."""

    duty: str
    account: str
    role_arn: str
    session_name: str
    assumed_role_arn: str
    tags: Mapping[str, str]
    credentials: AwsCredentials = field(repr=False)

    def audit_facts(self) -> dict[str, Any]:
        """What the audit event records about the identity a call ran as (no credentials)."""
        return {
            "duty": self.duty,
            "role_arn": self.role_arn,
            "role_session_name": self.session_name,
            "assumed_role_arn": self.assumed_role_arn,
            "session_tags": dict(self.tags),
            "credentials_expire": self.credentials.expiration.isoformat(),
        }

    def trail_identity(self) -> TrailIdentity:
        return TrailIdentity(account=self.account, username=self.session_name, arn=self.assumed_role_arn)


class DutySessions:
    """Assumes duty roles and caches their credentials per (duty, principal, account)."""

    def __init__(
        self, clients: AwsClients, duties: Mapping[str, AwsDutyConfig], clock: Clock = lambda: datetime.now(UTC)
    ) -> None:
        self._clients = clients
        self._duties = duties
        self._clock = clock
        self._cache: dict[tuple[str, Principal, str], DutySession] = {}
        self._locks: dict[tuple[str, Principal, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def session_for(self, duty: str, principal: Principal, account: str) -> tuple[DutySession, bool]:
        """The duty's session for this principal and account, and whether it came from the cache."""
        key = (duty, principal, account)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._cache.get(key)
            if cached is not None and cached.credentials.expiration - REFRESH_MARGIN > self._clock():
                return cached, True
            session = self._assume(duty, principal, account)
            self._cache[key] = session
            return session, False

    def _assume(self, duty: str, principal: Principal, account: str) -> DutySession:
        config = self._duties.get(duty)
        if config is None:
            raise HandlerError(f"duty `{duty}` is not configured under [aws.duties]")
        role_arn = config.role_for(duty, account)
        refuse_other_account(duty, role_arn, account)
        name = session_name(principal)
        tags = session_tags(principal)
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": name,
            "DurationSeconds": config.session_seconds,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        if config.external_id:
            params["ExternalId"] = config.external_id
        # In the sandbox, the target account's trail records this AssumeRole with its tags.
        hub = TrailIdentity(account=account, username="cedargate-server", arn=SERVER_IDENTITY_ARN)
        sts = self._clients.client("sts", agent=principal.agent, trail=hub)
        try:
            response = sts.assume_role(**params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            message = f"cannot assume the role of duty `{duty}` (`{role_arn}`): AWS error `{code}`"
            raise AssumeRoleError(message, duty, role_arn, code) from exc
        except BotoCoreError as exc:
            message = f"cannot assume the role of duty `{duty}` (`{role_arn}`): {exc}"
            raise AssumeRoleError(message, duty, role_arn, type(exc).__name__) from exc
        assumed_arn = str(response["AssumedRoleUser"]["Arn"])
        refuse_other_account(duty, assumed_arn, account)  # fail closed, whatever STS handed back
        c = response["Credentials"]
        expiration = c["Expiration"] if c["Expiration"].tzinfo else c["Expiration"].replace(tzinfo=UTC)
        return DutySession(
            duty=duty,
            account=account,
            role_arn=role_arn,
            session_name=name,
            assumed_role_arn=assumed_arn,
            tags=tags,
            credentials=AwsCredentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], expiration),
        )


def arn_account(arn: str) -> str | None:
    """The account field of an ARN (``None`` when ``arn`` is not one)."""
    match = _ARN_ACCOUNT.match(arn)
    return match["account"] if match is not None else None


def other_account_message(duty: str, role_arn: str, account: str) -> str | None:
    """Why ``duty`` may not run in ``account`` with ``role_arn``, or ``None`` when the role is in it."""
    role_account = arn_account(role_arn)
    if role_account == account:
        return None
    return (
        f"duty `{duty}` resolves to role `{role_arn}` for account `{account}`, but that role is in account "
        f"`{role_account}`: its calls would run there, not in the account the policy decided on; "
        "write the role as `arn:aws:iam::{account}:role/NAME` under [aws.duties]"
    )


def refuse_other_account(duty: str, role_arn: str, account: str) -> None:
    """Fail closed when the role a duty resolves to is not in the call's account."""
    message = other_account_message(duty, role_arn, account)
    if message is not None:
        raise AssumeRoleError(message, duty, role_arn, OTHER_ACCOUNT_CODE)


def session_name(principal: Principal) -> str:
    """``cedargate.<agent>.<task>``, cut to STS's 64 characters and its character set."""
    raw = f"cedargate.{principal.agent}.{principal.task}"
    return _SESSION_NAME_UNSAFE.sub("_", raw)[:64]


def session_tags(principal: Principal) -> dict[str, str]:
    """The session tags naming agent, user, team and task, in STS's value character set."""
    return {
        key: _TAG_VALUE_UNSAFE.sub("_", str(getattr(principal, attr)))[:256] for attr, key in SESSION_TAG_KEYS.items()
    }
