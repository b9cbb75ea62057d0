"""Known secret shapes never reach the audit log."""

from __future__ import annotations

from collections import UserDict
from enum import StrEnum
from typing import Any

import pytest

from cedargate.redact import REDACTED, arguments_for_audit, redact_text, redact_value

SECRETS = [
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0",
    "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secret_shapes_are_redacted_from_text(secret: str) -> None:
    redacted = redact_text(f"config: {secret} end")
    assert REDACTED in redacted
    assert secret.split()[-1] not in redacted


def test_arguments_under_sensitive_names_are_redacted_whole() -> None:
    args = arguments_for_audit({"path": "a.txt", "api_token": "hunter2", "nested": {"password": "x"}})
    assert args == {"path": "a.txt", "api_token": REDACTED, "nested": {"password": REDACTED}}


def test_long_arguments_are_summarised_by_length_and_digest() -> None:
    args = arguments_for_audit({"content": "x" * 5000})
    assert args["content"].startswith("x" * 256)
    assert "[5000 chars, sha256 " in args["content"]


class _Label(StrEnum):
    KEY = "key AKIAIOSFODNN7EXAMPLE"


class _Record(UserDict[str, Any]):
    pass


def test_subclasses_of_str_and_mapping_and_tuples_are_redacted_as_their_bases() -> None:
    value = {"label": _Label.KEY, "extra": _Record({"secret": "s3"}), "pair": ("x", "AKIAIOSFODNN7EXAMPLE")}
    assert redact_value(value) == {
        "label": f"key {REDACTED}",
        "extra": {"secret": REDACTED},
        "pair": ["x", REDACTED],
    }


def test_a_name_is_judged_the_same_every_time_it_is_seen() -> None:
    for _ in range(3):
        assert redact_value({"db_password": "p", "path": "p"}) == {"db_password": REDACTED, "path": "p"}
