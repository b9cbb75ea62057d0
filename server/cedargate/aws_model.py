"""botocore's service models: the one source of what a service, operation and parameter is.

Models are parsed once per process (EC2's takes seconds); operations that hand out
credentials are refused here, whatever a manifest says, so no path can publish them; and an
operation is published at risk ``read`` only when its name starts with a read verb.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Final

import botocore.session
from botocore.exceptions import UnknownServiceError
from botocore.model import OperationModel, ServiceModel, Shape

from cedargate.risk import Risk

CREDENTIAL_VENDING: Final = frozenset(
    {
        ("sts", "AssumeRole"),
        ("sts", "AssumeRoleWithSAML"),
        ("sts", "AssumeRoleWithWebIdentity"),
        ("sts", "AssumeRoot"),
        ("sts", "GetSessionToken"),
        ("sts", "GetFederationToken"),
        ("iam", "CreateAccessKey"),
        ("iam", "CreateLoginProfile"),
        ("iam", "UpdateLoginProfile"),
        ("iam", "CreateServiceSpecificCredential"),
        ("iam", "ResetServiceSpecificCredential"),
        ("sso", "GetRoleCredentials"),
        ("sso-oidc", "CreateToken"),
        ("cognito-identity", "GetCredentialsForIdentity"),
        ("cognito-identity", "GetOpenIdToken"),
        ("ecr", "GetAuthorizationToken"),
        ("ecr-public", "GetAuthorizationToken"),
        ("codeartifact", "GetAuthorizationToken"),
        ("redshift", "GetClusterCredentials"),
        ("redshift", "GetClusterCredentialsWithIAM"),
        ("redshift-serverless", "GetCredentials"),
    }
)
"""Operations that hand out credentials: never published, whatever a manifest says."""


READ_VERBS: Final = ("Describe", "List", "Get", "BatchGet", "Lookup", "Filter", "Search", "Head", "Scan", "Query")
"""The first words of operation names that only read, across botocore's models.

Chosen to err towards refusal: ``Check`` is left out (``license-manager:CheckInLicense``),
``Test`` (``apigateway:TestInvokeMethod`` runs the integration, ``elasticache:TestFailover``),
``Validate`` and ``Preview`` (a few act, e.g. ``endusermessaging:ValidateNotifyCodeVerification``).
An operation outside this list that only reads is published at risk ``write`` or above."""
_READ_NAME: Final = re.compile(rf"^({'|'.join(READ_VERBS)})(?=[A-Z]|$)")

_botocore = botocore.session.get_session()


def new_botocore_session() -> botocore.session.Session:
    """A fresh botocore session that shares this module's model loader.

    Service models are large (EC2's takes seconds to parse), so they are parsed once per
    process. The session itself is new so it picks up the event handlers registered at the
    time of the call (the sandbox's moto hooks are registered when moto is imported).
    """
    session = botocore.session.get_session()
    session.register_component("data_loader", _botocore.get_component("data_loader"))
    return session


@cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of ``service``; ``ValueError`` naming ``handler.service`` when unknown."""
    try:
        return _botocore.get_service_model(service)
    except UnknownServiceError as exc:
        raise ValueError(f"field `handler.service`: unknown AWS service `{service}`") from exc


@cache
def known_regions() -> frozenset[str]:
    """Every region of every partition botocore knows (its ``partitions`` data; no network)."""
    partitions = _botocore.get_component("data_loader").load_data("partitions")["partitions"]
    return frozenset(
        region for partition in partitions for region in partition["regions"] if not region.endswith("-global")
    )


def operation_model(service: str, operation: str) -> OperationModel:
    model = service_model(service)
    if operation not in model.operation_names:
        raise ValueError(
            f"field `handler.operation`: service `{service}` has no operation `{operation}` "
            "(operation names are CamelCase, e.g. `DescribeInstances`)"
        )
    if (service, operation) in CREDENTIAL_VENDING:
        raise ValueError(
            f"field `handler.operation`: `{service}:{operation}` hands out credentials and is never published as a tool"
        )
    return model.operation_model(operation)


def input_members(operation: OperationModel) -> Mapping[str, Shape]:
    shape = operation.input_shape
    return shape.members if shape is not None else {}


def required_members(operation: OperationModel) -> frozenset[str]:
    shape = operation.input_shape
    return frozenset(shape.required_members) if shape is not None else frozenset()


def is_read_operation(operation: str) -> bool:
    """Whether ``operation``'s name starts with a read verb (``READ_VERBS``, a whole word)."""
    return _READ_NAME.match(operation) is not None


OVERWRITE_VERBS: Final = ("Put", "Update", "Replace", "Set", "Modify", "Overwrite")
"""The first words of operation names that replace what was there (an object, a parameter, an
attribute), which MCP clients should hear as destructive even when the risk is ``write``."""
_OVERWRITE_NAME: Final = re.compile(rf"^({'|'.join(OVERWRITE_VERBS)})(?=[A-Z]|$)")


def overwrites_existing(operation: str) -> bool:
    """Whether ``operation``'s name starts with an overwriting verb (``OVERWRITE_VERBS``, a whole word)."""
    return _OVERWRITE_NAME.match(operation) is not None


def refuse_mutation_as_read(service: str, operation: str, risk: Risk) -> None:
    """``ValueError`` naming ``risk`` when an operation that may change things is published as a read.

    Risk decides which policies apply (the shipped ones let reads run in prod), so an
    ``ec2:StopInstances`` published as ``read`` would stop prod instances under a read policy.
    """
    if risk is Risk.READ and not is_read_operation(operation):
        verbs = ", ".join(f"{v}..." for v in READ_VERBS)
        raise ValueError(
            f"field `risk`: `{service}:{operation}` is not a read (only operations named {verbs} are); "
            'publish it as `risk = "write"` (or `destructive`, `privileged`) and pick a duty that may change things'
        )
