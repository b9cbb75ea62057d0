"""The command line at its edges: huge numbers, unwritable and odd folders, fresh projects, failed starts.

Each test runs the real CLI (``cedargate.cli.main``) on real folders and git repositories and
checks what a user sees: an error naming the flag, file or field and what to do (exit 2),
never a traceback, and nothing changed that the command did not mean to change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from tests.conftest import ROOT, sample_event
from tests.repo_support import Session, client_for

from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.cli import main
from cedargate.runtime import Runtime

HUGE = "99999999999999999999"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@x",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@x",
}


def _git(folder: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(["git", "-C", str(folder), *args], check=True, env=env, capture_output=True, text=True)
    return done.stdout


def _repository(folder: Path, branch: str = "main", *, commit: bool = True) -> Path:
    folder.mkdir(parents=True)
    _git(folder, "init", "-q", "-b", branch)
    if commit:
        (folder / "README.md").write_text("# svc\n", encoding="utf-8")
        _git(folder, "add", "-A")
        _git(folder, "commit", "-q", "-m", "start")
    return folder


def _init(folder: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(folder), "--user", "dana", "--json"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return folder / "cedargate.toml"


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["audit", "tail", "-n", HUGE], "-n/--lines"),
        (["audit", "query", "--limit", HUGE], "--limit"),
        (["actions", "-n", str(2**63)], "-n/--limit"),
        (["audit", "checkpoint", "--key", "k.pem", "--every", "99999999999"], "--every"),
        (["audit", "checkpoint", "--key", "k.pem", "--every", "1e400"], "--every"),
    ],
)
def test_a_number_too_large_for_a_flag_is_refused_naming_the_flag(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(tmp_path / "cedargate.toml"), *argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert f"argument {flag}: " in err and "Traceback" not in err


def test_the_largest_count_a_flag_takes_works(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(tree / "cedargate.toml")
    for argv in (["audit", "tail", "-n", str(2**63 - 1)], ["actions", "-n", str(2**63 - 1)]):
        (tree / "audit.jsonl").touch()
        assert main(["--config", config, *argv]) == 0, capsys.readouterr().err


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write into; root ignores modes, so it is made immutable for root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode == 0
        if not immutable:
            pytest.skip("cannot make a folder read-only here (root, and no chattr)")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)


def test_init_into_a_read_only_folder_names_it_and_leaves_it_as_it_was(
    read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write into `{read_only}`: " in err and "Traceback" not in err
    assert _listing(read_only) == []


@pytest.mark.anyio
async def test_workspaces_rm_refuses_uncommitted_work_unless_forced(
    runtime: Runtime, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with client_for(runtime) as client:
        workspace = await Session(client).ok("repo_create_branch", {"repository": "acme/web", "branch": "agent/cli"})
    worktree = runtime.config.workspaces_dir / "acme/web" / str(workspace["workspace"])
    (worktree / "notes.txt").write_text("precious work\n", encoding="utf-8")
    with open(worktree / "README.md", "a", encoding="utf-8") as readme:
        readme.write("edited\n")
    config = str(tree / "cedargate.toml")
    assert main(["--config", config, "workspaces", "rm", str(workspace["workspace"])]) == 2
    err = capsys.readouterr().err
    assert "has uncommitted changes" in err and "`README.md`" in err and "`notes.txt`" in err
    assert "--force" in err
    assert (worktree / "notes.txt").read_text(encoding="utf-8") == "precious work\n"
    assert main(["--config", config, "workspaces", "rm", str(workspace["workspace"]), "--force"]) == 0
    assert not worktree.exists()


def test_doctor_fails_an_audit_log_serve_would_refuse_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _init(tmp_path / "p", capsys)
    log = tmp_path / "p" / ".cedargate" / "audit.jsonl"
    log.write_text("not json\n", encoding="utf-8")
    assert main(["--config", str(config), "doctor", "--json"]) == 1
    found = {f["check"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert found["audit log"]["status"] == "fail"
    assert f"audit log `{log}` has a foreign or edited line at byte 0" in found["audit log"]["detail"]
    assert log.read_text(encoding="utf-8") == "not json\n"


def test_doctor_passes_a_torn_tail_serve_recovers_without_recovering_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _init(tmp_path / "p", capsys)
    log = tmp_path / "p" / ".cedargate" / "audit.jsonl"
    with closing(JsonlAuditLog(log)) as audit:
        audit.append(EventRecord.of(sample_event(1)))
    with open(log, "ab") as dying:  # a server killed in the middle of its line
        dying.write(b'{"event_id":"e2","time":"2026-')
    before = log.read_bytes()
    main(["--config", str(config), "doctor", "--json"])
    found = {f["check"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert found["audit log"]["status"] == "ok" and "torn write" in found["audit log"]["detail"]
    assert log.read_bytes() == before


def test_init_with_a_kept_out_of_date_lock_writes_a_config_tools_lock_can_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copytree(ROOT / "tools", folder / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    commit = folder / "tools" / "repo" / "commit.toml"
    text = commit.read_text(encoding="utf-8")
    assert '\ndescription = "' in text
    commit.write_text(text.replace('\ndescription = "', '\ndescription = "(edited) ', 1), encoding="utf-8")
    assert main(["init", str(folder), "--user", "dana"]) == 0
    err = capsys.readouterr().err
    assert "`repo_commit`" in err and "uncomment `tools_lock`" in err and "cedargate tools lock" in err
    config = folder / "cedargate.toml"
    written = config.read_text(encoding="utf-8")
    assert '\n# tools_lock = "tools/tools.lock"' in written
    # The way out the config describes works: uncomment, lock, and the lock holds.
    config.write_text(written.replace('\n# tools_lock = "', '\ntools_lock = "'), encoding="utf-8")
    assert main(["--config", str(config), "tools", "lock"]) == 0
    assert main(["--config", str(config), "tools", "lock", "--check"]) == 0


def test_demo_says_serve_did_not_start_instead_of_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    shipped = tmp_path / "shipped"
    (shipped / "policies").mkdir(parents=True)
    (shipped / "tools").symlink_to(ROOT / "tools")
    (shipped / "policies" / "broken.cedar").write_text("permit(principal, action, resource) whenever;\n")
    monkeypatch.setattr("cedargate.demo.project_root", lambda: shipped)
    assert main(["demo", "--workdir", str(tmp_path / "d")]) == 2
    err = capfd.readouterr().err
    assert "`cedargate serve` did not start: its error is printed above" in err
    assert "Traceback" not in err and "ExceptionGroup" not in err


def test_doctor_warns_that_a_repository_without_commits_refuses_its_tools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _repository(tmp_path / "nocommit", commit=False)
    config = _init(folder, capsys)
    main(["--config", str(config), "doctor", "--json"])
    found = {f["check"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    repository = found["repository local/nocommit"]
    assert repository["status"] == "warn"
    assert "no commits yet: repository tools refuse until the first commit" in repository["detail"]


@pytest.mark.parametrize("branch", ["feat-😀", 'say-"hi"'])
def test_init_writes_a_branch_name_toml_reads_back_as_it_is(
    branch: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _repository(tmp_path / "svc", branch=branch, commit=False)
    assert main(["init", str(folder), "--user", "dana"]) == 0, capsys.readouterr().err
    written = tomllib.loads((folder / "cedargate.toml").read_text(encoding="utf-8"))
    assert written["repositories"][0]["protected_branches"] == [branch]


def test_init_names_a_login_name_that_is_not_an_id_and_how_to_pass_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "John Doe")
    assert main(["init", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "your login name `John Doe` is not an id" in err and "pass --user NAME" in err
    assert not (tmp_path / "p").exists()
    with pytest.raises(SystemExit) as exited:
        main(["init", str(tmp_path / "p"), "--user", "John Doe"])
    assert exited.value.code == 2 and "argument --user: `John Doe` is not an id" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_doctor_json_reports_a_config_that_does_not_load_as_a_failed_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "typo.toml"
    config.write_text('tool_dir = "tools"\n', encoding="utf-8")
    assert main(["--config", str(config), "doctor", "--json"]) == 2
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["status"] == "fail"
    [finding] = report["findings"]
    assert finding["check"] == "config" and finding["status"] == "fail" and "`tool_dir`" in finding["detail"]
    assert "`tool_dir`" in err


def test_a_fresh_project_has_no_events_yet_rather_than_a_wrong_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_init(tmp_path / "p", capsys))
    for command in (["tail"], ["query"], ["query", "--json"], ["export"]):
        assert main(["--config", config, "audit", *command]) == 0, command
        out, err = capsys.readouterr()
        assert out == "", command
        assert "no events yet: `cedargate serve` creates the log" in err and "check `[audit] path`" not in err


def test_following_a_log_not_created_yet_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cedargate.cli.audit as audit_cli

    config = str(_init(tmp_path / "p", capsys))
    log = tmp_path / "p" / ".cedargate" / "audit.jsonl"

    def serve_starts() -> None:
        with closing(JsonlAuditLog(log)) as audit:
            audit.append(EventRecord.of(sample_event(1)))

    rounds = [lambda: None, serve_starts, lambda: None]

    def next_round(_: float) -> None:
        if not rounds:
            raise KeyboardInterrupt
        rounds.pop(0)()

    monkeypatch.setattr(audit_cli.time, "sleep", next_round)
    assert main(["--config", config, "audit", "tail", "--follow", "--json"]) == 130
    out, err = capsys.readouterr()
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == ["e1"]
    assert "no events yet" in err and f"waiting for `{log}` to appear" in err


def test_verify_names_a_folder_given_as_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--log", str(tmp_path)]) == 2
    assert f"audit log `{tmp_path}` is a folder" in capsys.readouterr().err
    assert main(["audit", "tail", "--log", str(tmp_path)]) == 2
    assert f"audit log `{tmp_path}` is a folder" in capsys.readouterr().err


def test_demo_with_a_relative_workdir_prints_absolute_paths_and_json_names_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--workdir", "demo1", "--json"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["config"] == str(tmp_path / "demo1" / "cedargate.toml")
    assert report["audit_log"] == str(tmp_path / "demo1" / "audit.jsonl")
    assert main(["--config", report["config"], "audit", "verify"]) == 0
