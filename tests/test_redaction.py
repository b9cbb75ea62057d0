"""Real-looking secrets in arguments and results never reach the audit log or the agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from tests.conftest import audit_events

from cedargate.config import load_config
from cedargate.git import git_text, run_git
from cedargate.redact import REDACTED, redact_text
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
SECRETS = (AWS_KEY_ID, AWS_SECRET, GITHUB_TOKEN, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "hunter2-prod", "s3cr3t")
DOTENV = (
    f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\nGITHUB_TOKEN={GITHUB_TOKEN}\n"
    f"DB_PASSWORD=hunter2-prod\nDATABASE_URL=postgres://app:s3cr3t@db:5432/shop\nLOG_LEVEL=debug\n{PRIVATE_KEY}\n"
)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"key {AWS_KEY_ID} here", "key [REDACTED] here"),
        (f'{{"SecretAccessKey": "{AWS_SECRET}"}}', '{"SecretAccessKey": "[REDACTED]"}'),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: [REDACTED]"),
        ("xoxb-1234567890-abcdefghij", REDACTED),
        ("glpat-abcdefghij0123456789", REDACTED),
        ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", REDACTED),
        ("AIza" + "SyD-abcdefghijklmnopqrstuvwxyz01234", REDACTED),
        ("export API_TOKEN=abc123 # rotate", "export API_TOKEN=[REDACTED] # rotate"),
        ("postgres://app:s3cr3t@db/x", "postgres://app:[REDACTED]@db/x"),
    ],
)
def test_known_secret_shapes_are_replaced_and_their_names_kept(text: str, kept: str) -> None:
    assert redact_text(text) == kept


def test_code_that_only_mentions_passwords_is_left_alone() -> None:
    code = 'password = request.form["password"]\nTOKEN_TTL = 30\nX=$SECRET_TOKEN\n'
    assert redact_text(code) == code


async def test_secrets_written_by_an_agent_are_committed_but_not_audited(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(
            "repo_write_file",
            {"repository": "acme/web", "branch": "agent/env", "path": ".env", "content": DOTENV, "message": "env"},
        )
    assert result.is_error is False
    assert git_text(repo.path, ["show", "agent/env:.env"]) == DOTENV.strip()
    log = runtime.config.audit.path.read_text()
    for secret in SECRETS:
        assert secret not in log
    [event] = audit_events(runtime.config.audit.path)
    assert "LOG_LEVEL=debug" in event["arguments"]["content"]
    assert "DB_PASSWORD=[REDACTED]" in event["arguments"]["content"]


async def test_secrets_in_a_file_an_agent_reads_do_not_reach_it_or_the_log(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    (repo.path / "config.env").write_text(DOTENV)
    run_git(repo.path, ["add", "config.env"])
    run_git(
        repo.path,
        ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "add config"],
    )
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "config.env"})
    returned = json.dumps(result.structured_content) + result.content[0].text  # type: ignore[union-attr]
    for secret in SECRETS:
        assert secret not in returned
    assert "LOG_LEVEL=debug" in returned
    for secret in SECRETS:
        assert secret not in runtime.config.audit.path.read_text()


async def test_a_manifest_declared_sensitive_field_is_never_audited_or_returned(tree: Path) -> None:
    manifest = tree / "tools/repo/write_file.toml"
    manifest.write_text(
        manifest.read_text().replace("cost_cents = 1\n", 'cost_cents = 1\nsensitive_fields = ["content", "commit"]\n')
    )
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={}))
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool(
                "repo_write_file",
                {"repository": "acme/web", "branch": "agent/s", "path": "note.txt", "content": "plain words"},
            )
    finally:
        runtime.close()
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    assert git_text(repo.path, ["show", "agent/s:note.txt"]) == "plain words"
    assert result.structured_content is not None and result.structured_content["commit"] == REDACTED
    [event] = audit_events(runtime.config.audit.path)
    assert event["arguments"]["content"] == REDACTED
    assert event["arguments"]["path"] == "note.txt"
