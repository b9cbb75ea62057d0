"""Secrets the agent can reach by a side door (search hits, cut outputs, errors, odd encodings) stay redacted."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from tests.conftest import audit_events
from tests.repo_support import Session, client_for

from cedargate.aws_result import read_bodies
from cedargate.config import load_config
from cedargate.git import run_git
from cedargate.redact import REDACTED
from cedargate.runtime import Runtime, build_runtime
from cedargate.sandbox import TAIL_BYTES, _summarise
from cedargate.server import refuse_audited

pytestmark = pytest.mark.anyio

GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_BODY = ["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"] * 3
KEY = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_BODY) + "\n-----END RSA PRIVATE KEY-----\n"


def _commit(runtime: Runtime, files: dict[str, str]) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    for name, text in files.items():
        (repo.path / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / name).write_text(text)
        run_git(repo.path, ["add", name])
    run_git(repo.path, ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "add"])


def _with_sensitive_content(tree: Path) -> Runtime:
    manifest = tree / "tools/repo/write_file.toml"
    manifest.write_text(
        manifest.read_text().replace("cost_cents = 1\n", 'cost_cents = 1\nsensitive_fields = ["content"]\n')
    )
    return build_runtime(load_config(tree / "cedargate.toml", environ={}))


async def test_a_search_hit_inside_a_committed_private_key_shows_none_of_its_body(runtime: Runtime) -> None:
    _commit(runtime, {"deploy/id_rsa": KEY, "notes.txt": "plain line\n"})
    async with client_for(runtime) as client:
        result = await Session(client).ok("repo_search", {"repository": "acme/web", "pattern": "."})
    texts = {(m["path"], m["line"]): m["text"] for m in result["matches"]}
    assert texts[("deploy/id_rsa", 2)] == REDACTED
    assert texts[("notes.txt", 1)] == "plain line"
    assert KEY_BODY[0] not in json.dumps(result)


async def test_a_secret_added_in_a_commit_is_redacted_in_its_diff_and_patch(runtime: Runtime) -> None:
    _commit(runtime, {"config/.env": "DB_PASSWORD=hunter2-prod\nLOG_LEVEL=debug\n"})
    async with client_for(runtime) as client:
        session = Session(client)
        diff = await session.ok("repo_diff", {"repository": "acme/web", "base": "HEAD~1", "head": "HEAD"})
        shown = await session.ok("repo_show_commit", {"repository": "acme/web", "commit": "HEAD"})
    for patch in (diff["patch"], shown["patch"]):
        assert f"+DB_PASSWORD={REDACTED}" in patch
        assert "hunter2-prod" not in patch


def test_a_test_output_tail_starting_inside_a_private_key_shows_none_of_its_body() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_BODY * 40) + "\n-----END RSA PRIVATE KEY-----\n"
    with tempfile.TemporaryFile() as output:
        output.write(key.encode())
        run = _summarise("sh ./ci.sh", 0, False, 1.0, output)
    assert run.output_bytes > TAIL_BYTES
    assert KEY_BODY[0][:16] not in run.output_tail
    assert REDACTED in run.output_tail


async def test_an_unknown_tool_name_holding_a_token_is_redacted_in_the_reply_and_the_audit(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("lookup_" + GITHUB_TOKEN, {})
    assert GITHUB_TOKEN not in refused.value.message
    [event] = audit_events(runtime.config.audit.path)
    assert event["tool"] == f"lookup_{REDACTED}"
    assert GITHUB_TOKEN not in event["error"]


async def test_a_sensitive_field_of_the_wrong_type_is_not_echoed_in_the_error(tree: Path) -> None:
    runtime = _with_sensitive_content(tree)
    try:
        async with client_for(runtime) as client:
            text = await Session(client).refused(
                "repo_write_file",
                {"repository": "acme/web", "branch": "agent/x", "path": "n.txt", "content": {"db": "plain-words-xyz"}},
            )
    finally:
        runtime.close()
    assert "field `content`" in text
    assert "plain-words-xyz" not in text
    assert "plain-words-xyz" not in runtime.config.audit.path.read_text()


def test_a_session_refusal_keeps_the_tools_sensitive_fields_out_of_the_audit(tree: Path) -> None:
    runtime = _with_sensitive_content(tree)
    arguments = {"repository": "acme/web", "branch": "agent/x", "path": "n.txt", "content": "plain-words-xyz"}
    params = types.CallToolRequestParams(name="repo_write_file", arguments=arguments)
    try:
        refuse_audited(runtime.audit, runtime.principal, params, "s-1", "session `s-1` is another's", runtime.catalog)
    finally:
        runtime.close()
    [event] = audit_events(runtime.config.audit.path)
    assert event["arguments"]["content"] == REDACTED
    assert event["arguments"]["path"] == "n.txt"


@pytest.mark.parametrize(("encoding", "shown_as"), [("latin-1", "latin-1"), ("utf-16", "utf-16")])
def test_an_object_body_not_in_utf8_holding_a_secret_is_returned_redacted(encoding: str, shown_as: str) -> None:
    body = f"# café\nDB_PASSWORD=hunter2-s3\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n".encode(encoding)
    response = read_bodies({"Body": io.BytesIO(body)}, 1 << 20, "GetObject")
    assert response["BodyEncoding"] == shown_as
    assert "hunter2-s3" not in response["Body"] and AWS_SECRET not in response["Body"]
    assert "café" in response["Body"]


def test_an_object_body_not_in_utf8_without_a_secret_stays_base64() -> None:
    body = "café au lait\n".encode("latin-1")
    response = read_bodies({"Body": io.BytesIO(body)}, 1 << 20, "GetObject")
    assert (response["BodyEncoding"], base64.b64decode(response["Body"])) == ("base64", body)
