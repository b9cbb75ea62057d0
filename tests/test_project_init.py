"""``cedargate init``: a starting project that serves as written, or nothing at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from tests.conftest import ROOT, audit_events, shipped_check

from cedargate.catalog import load_catalog
from cedargate.cli import main
from cedargate.config import load_config
from cedargate.errors import ConfigError
from cedargate.project_init import init_project

pytestmark = pytest.mark.anyio


def _git_repository(path: Path, branch: str = "trunk") -> Path:
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    for args in (["init", "-q", "-b", branch], ["add", "-A"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        if args[0] == "add":
            (path / "README.md").write_text("# widget\n\nThe widget service.\n", encoding="utf-8")
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


async def test_a_project_in_a_git_repository_serves_that_repository_over_stdio(tmp_path: Path) -> None:
    repository = _git_repository(tmp_path / "widget")
    result = init_project(repository / "ops", user="carol")
    config_path = repository / "ops" / "cedargate.toml"
    assert result.config == config_path and result.copied == ("tools", "policies")
    config = load_config(config_path, environ={})
    published = config.repository("local/widget")
    assert published is not None and published.path == repository and tuple(published.protected_branches) == ("trunk",)
    assert config.principal is not None and config.principal.on_behalf_of == "carol"
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cedargate", "--config", str(config_path), "serve"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")},
            "PYTHONPATH": str(ROOT / "server"),
        },
    )
    with anyio.fail_after(60):
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
            read = await client.call_tool("repo_read_file", {"repository": "local/widget", "path": "README.md"})
    assert len(tools) == result.tools
    assert read.is_error is False, read.content
    assert read.structured_content is not None and "The widget service." in read.structured_content["content"]
    (event,) = audit_events(repository / "ops" / ".cedargate" / "audit.jsonl")
    assert (event["tool"], event["outcome"], event["principal"]["on_behalf_of"]) == (
        "repo_read_file",
        "succeeded",
        "carol",
    )
    # What serving wrote (audit log, store) is no change to commit; the project itself is.
    untracked = subprocess.run(
        ["git", "-C", str(repository), "status", "--porcelain", "--untracked-files=all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert untracked and all(line.startswith("?? ops/") for line in untracked)
    assert not [line for line in untracked if ".cedargate" in line]


def test_a_folder_name_that_is_no_repository_name_is_made_into_one(tmp_path: Path) -> None:
    repository = _git_repository(tmp_path / "My Project ü")
    result = init_project(repository, user="erin")
    assert result.repository is not None and result.repository.name == "local/My-Project"
    config = load_config(result.config, environ={})
    published = config.repository("local/My-Project")
    assert published is not None and published.path == repository


def test_outside_a_git_repository_no_repository_is_published(tmp_path: Path) -> None:
    result = init_project(tmp_path / "new" / "project")
    config = load_config(result.config, environ={})
    assert result.repository is None and not config.repositories
    assert result.tools == len(load_catalog(ROOT / "tools", check=shipped_check()))
    assert config.tools_lock == tmp_path / "new" / "project" / "tools" / "tools.lock"


def test_an_existing_config_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "cedargate.toml").write_text("# mine\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cedargate.toml` exists; nothing was written"):
        init_project(tmp_path)
    assert _listing(tmp_path) == ["cedargate.toml"]
    assert (tmp_path / "cedargate.toml").read_text(encoding="utf-8") == "# mine\n"


def test_a_kept_policy_that_does_not_parse_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team.cedar").write_text("permit(principal, action, resource) whenever;\n")
    before = _listing(tmp_path)
    with pytest.raises(ConfigError, match=r"does not load, so nothing was written: .*team\.cedar"):
        init_project(tmp_path)
    assert _listing(tmp_path) == before  # the copied tools/ and the staged config are gone


def test_a_kept_tools_folder_without_manifests_is_refused_and_nothing_is_added(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    with pytest.raises(ConfigError, match="holds no manifests"):
        init_project(tmp_path)
    assert _listing(tmp_path) == ["tools"]


def test_a_failure_removes_the_folders_init_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "shipped"
    (shipped / "policies").mkdir(parents=True)
    (shipped / "tools").symlink_to(ROOT / "tools")
    (shipped / "policies" / "broken.cedar").write_text("forbid(principal, action, resource) when { nope };\n")
    monkeypatch.setattr("cedargate.project_init.project_root", lambda: shipped)
    with pytest.raises(ConfigError, match=r"broken\.cedar"):
        init_project(tmp_path / "fresh" / "deeper")
    assert not (tmp_path / "fresh").exists()


def test_kept_manifests_without_a_lock_are_served_with_the_lock_left_to_their_review(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    manifest = (ROOT / "tools" / "repo" / "read_file.toml").read_text(encoding="utf-8")
    (tmp_path / "tools" / "read_file.toml").write_text(manifest, encoding="utf-8")
    (tmp_path / "policies").mkdir()  # the shipped policies name the shipped tools: kept with them
    (tmp_path / "policies" / "reads.cedar").write_text(
        'permit(principal, action == Action::"repo_read_file", resource);'
    )
    result = init_project(tmp_path)
    assert (result.copied, result.kept, result.tools, result.policies) == ((), ("tools", "policies"), 1, 1)
    assert not (tmp_path / "tools" / "tools.lock").exists()
    config = load_config(result.config, environ={})
    assert config.tools_lock is None
    assert '# tools_lock = "tools/tools.lock"' in result.config.read_text(encoding="utf-8")


def test_the_command_prints_json_a_script_can_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _git_repository(tmp_path / "svc", branch="main")
    assert main(["init", str(tmp_path / "svc"), "--user", "dana", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"] == str(tmp_path / "svc" / "cedargate.toml")
    assert report["repository"] == {"name": "local/svc", "path": ".", "branch": "main"}
    assert report["copied"] == ["tools", "policies"] and report["kept"] == []
    entry = report["client_entry"]  # what the text output offers for a client's server list
    assert entry["args"][-3:] == ["--config", report["config"], "serve"] and Path(entry["command"]).exists()
    written = tomllib.loads((tmp_path / "svc" / "cedargate.toml").read_text(encoding="utf-8"))
    assert written["principal"]["on_behalf_of"] == "dana"
    assert main(["init", str(tmp_path / "svc")]) == 2
    assert "exists; nothing was written" in capsys.readouterr().err


def test_the_missing_config_error_names_a_command_that_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "absent.toml"), "tools", "list"]) == 2
    error = capsys.readouterr().err
    assert "run `cedargate init`" in error
    assert main(["init", str(tmp_path / "here"), "--json"]) == 0
    assert main(["--config", str(tmp_path / "here" / "cedargate.toml"), "tools", "list", "--json"]) == 0
