"""Known secret shapes never reach the audit log."""

from __future__ import annotations

import json
from collections import UserDict
from enum import StrEnum
from typing import Any

import pytest

from cedargate.redact import (
    REDACTED,
    arguments_for_audit,
    redact_text,
    redact_value,
    redacted_head,
    redacted_lines,
    redacted_tail,
)

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


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("+DB_PASSWORD=hunter2diff", "hunter2diff"),
        ("  DB_PASSWORD=hunter2indent", "hunter2indent"),
        ('DB_PASSWORD="correct horse battery staple"', "horse battery staple"),
        ("DB_PASSWORD=abc#def123", "def123"),
        ("SECRET_KEY_BASE=9f8e7d6c5b4a3", "9f8e7d6c5b4a3"),
        ("DB_PASS=hunter2pass", "hunter2pass"),
        ("aws_session_token = IQoJb3JpZ2luX2VjEJr//wEaCXVzZXNzaW9uYm9keQ", "IQoJb3JpZ2luX2VjEJr"),
        ('{"credentials":{"sessionToken":"IQoJb3JpZ2luX2Vj"}}', "IQoJb3JpZ2luX2Vj"),
        ("redis://:redis-pw-123@cache:6379/0", "redis-pw-123"),
        ("https://user:p@ssw0rd@host/x", "ssw0rd"),
        ("host=db user=app password=pg-pw-456", "pg-pw-456"),
        ("Server=db;User Id=sa;Password=hunter2mssql;", "hunter2mssql"),
        (json.dumps(json.dumps({"SecretAccessKey": AWS_SECRET})), AWS_SECRET),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBFsecretpgp\n-----END PGP PRIVATE KEY BLOCK-----", "lQOYBF"),
        ("backup_" + GITHUB_TOKEN, GITHUB_TOKEN),
        ("creds_AKIAIOSFODNN7EXAMPLE.csv", "AKIAIOSFODNN7EXAMPLE"),
        ("Authorization: Basic dXNlcjpodW50ZXIyc2VjcmV0", "dXNlcjpodW50ZXIyc2VjcmV0"),
        ("xapp-1-A0123-4567-abcdef0123456789", "abcdef0123456789"),
    ],
)
def test_secret_shapes_in_diffs_configs_and_glued_names_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"api":"http://localhost:8080","owner":"bob@example.com"}',
        'SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]\nGITHUB_TOKEN = os.getenv("GITHUB_TOKEN")\nCSRF_TOKEN = None\n',
        "Each bearer\n    authentication_middleware_handler runs first",
        "db.connect(user=user, password=password)\nMAX_TOKENS=4096\n",
    ],
)
def test_json_code_and_prose_that_only_look_like_secrets_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_names_that_describe_or_page_through_secrets_keep_their_values() -> None:
    kept = {
        "TOKEN_TTL_SECONDS": "30",
        "MAX_TOKENS": "4096",
        "SECRET_ROTATION_DAYS": "90",
        "next_token": "abc",
        "PasswordLastUsed": "2024-01-01",
        "PWD": "/var/task",
    }
    assert redact_value(kept) == kept


def test_names_of_passwords_and_connection_strings_are_redacted() -> None:
    environment = {
        "DB_PASS": "hunter2-lambda",
        "SMTP_PWD": "pw",
        "PG_DSN": "host=db",
        "apiKey": "k",
        "REDIS_URL": "redis://:redis-pw-123@cache:6379/0",
    }
    assert redact_value(environment) == {
        "DB_PASS": REDACTED,
        "SMTP_PWD": REDACTED,
        "PG_DSN": REDACTED,
        "apiKey": REDACTED,
        "REDIS_URL": f"redis://:{REDACTED}@cache:6379/0",
    }


KEY = "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t\n" * 80
KEY += "-----END RSA PRIVATE KEY-----\n"


def test_a_tail_cut_inside_a_private_key_shows_none_of_its_body() -> None:
    output = ("x" * 10_000 + "\n" + KEY + "done\n").encode()
    assert redacted_tail(output, 1024, whole=True).endswith(f"x\n{REDACTED}\ndone\n")
    tail = redacted_tail(output[-2048:], 1024, whole=False)
    assert "MIIEow" not in tail
    assert tail.endswith(f"{REDACTED}\ndone\n")


def test_a_head_cut_inside_a_secret_is_redacted_before_the_cut() -> None:
    patch = ("+" + "y" * 100 + "\n" + KEY).encode()
    head, cut = redacted_head(patch, 160)
    assert cut
    assert "MIIEow" not in head
    assert head.endswith(f"{REDACTED}\n")


def test_lines_of_a_private_key_found_by_a_search_are_redacted_as_in_the_whole_file() -> None:
    text = "intro\n" + KEY + "DB_PASSWORD=hunter2\n"
    lines = redacted_lines(text, [1, 3, 83, 84])
    assert lines == {1: "intro", 3: REDACTED, 83: REDACTED, 84: f"DB_PASSWORD={REDACTED}"}
