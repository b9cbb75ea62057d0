"""`cedargate provenance` on a real repository and trail: from a commit back to the reads behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from tests.conftest import audit_events

from cedargate.cli import main
from cedargate.git import git_text, run_git
from cedargate.provenance import audit_event_of
from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


async def _session_with_reads_then_write(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "src/app.py"})
        await client.call_tool(
            "repo_write_file",
            {
                "repository": "acme/web",
                "branch": "agent/prov",
                "path": "src/app.py",
                "content": "TIMEOUT_SECONDS = 9\n",
            },
        )


def _tip_of_prov(runtime: Runtime) -> tuple[str, str]:
    """The commit at `agent/prov` in acme/web, and the config path `cedargate provenance` reads."""
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    return git_text(repo.path, ["rev-parse", "agent/prov"]), str(runtime.config.base_dir / "cedargate.toml")


async def test_provenance_of_a_commit_lists_the_write_and_the_reads_before_it(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    await _session_with_reads_then_write(runtime)
    commit, config = _tip_of_prov(runtime)
    assert main(["--config", config, "provenance", commit, "--repo", "acme/web", "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    read_readme, read_app, write = audit_events(runtime.config.audit.path)
    assert tree["event_id"] == write["event_id"]
    assert [s["event_id"] for s in tree["sources"]] == [read_readme["event_id"], read_app["event_id"]]
    assert main(["--config", config, "provenance", commit, "--repo", "acme/web"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(" ", 2)[1] == "repo_write_file" and "path=src/app.py" in lines[0]
    assert lines[1].startswith("  <- ") and "README.md" in lines[1]
    assert lines[2].startswith("  <- ") and "src/app.py" in lines[2]


async def test_an_agent_message_carrying_cedargate_trailers_is_refused_and_commits_nothing(
    runtime: Runtime,
) -> None:
    async with Client(build_server(runtime)) as client:
        await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
        [read] = audit_events(runtime.config.audit.path)
        forged = f"Tidy\n\nCedargate-Agent: someone-else\ncedargate-audit-event: {read['event_id']}"
        result = await client.call_tool(
            "repo_write_file",
            {"repository": "acme/web", "branch": "agent/prov", "path": "a.txt", "content": "a\n", "message": forged},
        )
    assert result.is_error is True
    assert "field `message`: `Cedargate-Agent: someone-else` reads as one of cedargate's provenance trailers" in (
        result.content[0].text  # type: ignore[union-attr]
    )
    repo = runtime.config.repository("acme/web")
    assert repo is not None and git_text(repo.path, ["branch", "--list", "agent/prov"]) == ""
    assert audit_events(runtime.config.audit.path)[-1]["outcome"] == "invalid_arguments"


async def test_trailers_in_an_earlier_paragraph_do_not_attribute_the_commit(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the last paragraph is a trailer block: a message written outside the tools cannot borrow an event."""
    await _session_with_reads_then_write(runtime)
    read, _, write = audit_events(runtime.config.audit.path)
    commit, config = _tip_of_prov(runtime)
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    message = f"Tidy\n\nCedargate-Audit-Event: {read['event_id']}\n\nCedargate-Audit-Event: {write['event_id']}\n"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    tree_id = git_text(repo.path, ["rev-parse", f"{commit}^{{tree}}"])
    forged = run_git(repo.path, ["commit-tree", tree_id, "-p", commit, "-F", "-"], input=message.encode(), env=env)
    assert main(["--config", config, "provenance", forged.stdout.decode().strip(), "--repo", "acme/web", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["event_id"] == write["event_id"]


def test_the_last_audit_event_of_the_trailer_block_is_taken() -> None:
    assert audit_event_of("first second\n") == "second"
    assert audit_event_of("  \n") is None


async def test_provenance_of_an_event_id_needs_no_repository(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    await _session_with_reads_then_write(runtime)
    write = audit_events(runtime.config.audit.path)[-1]
    log = str(runtime.config.audit.path)
    assert main(["provenance", write["event_id"], "--log", log, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["sources"]) == 2


async def test_a_commit_not_made_through_cedargate_is_named(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    config = str(runtime.config.base_dir / "cedargate.toml")
    runtime.config.audit.path.write_text("")
    assert main(["--config", config, "provenance", "main", "--repo", "acme/web"]) == 2
    assert "has no `Cedargate-Audit-Event:` trailer" in capsys.readouterr().err


def test_an_unknown_event_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    assert main(["provenance", "nope", "--log", str(log)]) == 2
    assert "event `nope` is not in the audit log" in capsys.readouterr().err
