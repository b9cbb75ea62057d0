"""The embedded sandbox: moto in-process, seeded once with an estate, plus its trail.

moto keeps one state per account id; assuming a role in another account id moves a client
into that account, exactly as STS would. moto ignores ``ExpectedBucketOwner``, which AWS
enforces; the sandbox refuses a mismatch itself, as AWS would (403 ``AccessDenied``), so the
handler's one code path is refused the same way in both. The sandbox seeds every configured account lazily,
on the first AWS call, so servers that only use repository tools pay nothing for it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from botocore.awsrequest import AWSResponse

from cedargate.aws_estate import seed_account
from cedargate.aws_trail import SandboxTrail

if TYPE_CHECKING:
    from cedargate.aws_session import AwsClients, TrailIdentity

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

    def instrument(self, client: Any, trail: TrailIdentity | None) -> None:
        """Make ``client`` behave as AWS would where moto does not: bucket owners, and the trail."""
        if client.meta.service_model.service_name == "s3":
            enforce_bucket_owner(client)
        if trail is not None:
            self.trail.instrument(client, trail)

    def stop(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None


_OWNERS_KEY: Final = "cedargate_expected_owners"


def enforce_bucket_owner(client: Any) -> None:
    """Refuse, as AWS does, an S3 call whose ``Expected(Source)BucketOwner`` does not own the bucket."""
    events = client.meta.events

    def note(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_OWNERS_KEY] = [
            (bucket, str(params[member]))
            for member, bucket in (
                ("ExpectedBucketOwner", params.get("Bucket")),
                ("ExpectedSourceBucketOwner", _source_bucket(params.get("CopySource"))),
            )
            if params.get(member) and isinstance(bucket, str)
        ]

    def refuse(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        for bucket, expected in context.get(_OWNERS_KEY, ()):
            owner = bucket_owner(bucket)
            if owner is not None and owner != expected:
                parsed = {
                    "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                    "ResponseMetadata": {"HTTPStatusCode": 403, "RequestId": str(uuid.uuid4())},
                }
                return AWSResponse("https://s3.sandbox", 403, {}, None), parsed
        return None

    events.register("before-parameter-build.s3", note)
    events.register_first("before-call.s3", refuse)


def bucket_owner(bucket: str) -> str | None:
    """The account moto holds ``bucket`` in (``None``: no such bucket, moto answers that itself)."""
    from moto.s3.models import s3_backends

    found = s3_backends.bucket_accounts.get(bucket)
    return found[1] if found is not None else None


def _source_bucket(copy_source: Any) -> str | None:
    if isinstance(copy_source, Mapping):
        bucket = copy_source.get("Bucket")
        return bucket if isinstance(bucket, str) else None
    if isinstance(copy_source, str):
        return copy_source.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return None
