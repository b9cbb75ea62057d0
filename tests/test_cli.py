"""The command line: help everywhere, JSON where scripts read, and the demo's scripted session."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from tests.conftest import ROOT

from cedargate.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _command_paths(sub, (*prefix, name))
    return paths


@pytest.mark.parametrize("command", _command_paths(build_parser()), ids=lambda c: " ".join(c) or "cedargate")
def test_every_command_has_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: cedargate" in out
    assert "--config PATH" in out  # before or after the command: `cedargate doctor --config x.toml` works


def test_a_bare_group_prints_its_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit"]) == 2
    assert "verify" in capsys.readouterr().out


def test_tools_list_json_names_every_manifest_with_its_hash(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tree / "cedargate.toml"), "tools", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    declared = [tomllib.loads(p.read_text()) for p in (tree / "tools").rglob("*.toml")]
    names = sorted(entry["name"] for data in declared for entry in data.get("tool", [data]))
    assert sorted(r["name"] for r in rows) == names
    assert all(len(r["manifest_hash"]) == 64 for r in rows)


def test_tools_list_keeps_its_columns_in_line_for_long_names(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = (tree / "tools/repo/apply_diff.toml").read_text()
    long_name = "repo_apply_diff_to_the_task_workspace_and_stage_it"
    (tree / "tools/repo/long.toml").write_text(manifest.replace('"repo_apply_diff"', f'"{long_name}"', 1))

    assert main(["--config", str(tree / "cedargate.toml"), "tools", "list"]) == 0

    rows = capsys.readouterr().out.splitlines()
    assert any(row.startswith(long_name + " ") for row in rows)
    hashes = {len(row.split("  not locked")[0].rstrip()) - 12 for row in rows}
    risks = {re.search(r"\s(read|write|destructive|privileged)\s", row).start() for row in rows}  # type: ignore[union-attr]
    assert len(risks) == 1 and len(hashes) == 1  # every row's risk and hash start in the same column


def test_policy_schema_prints_the_generated_schema(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    actions = schema[""]["actions"]
    assert actions["repo_write_file"]["memberOf"] == [{"id": "risk:write"}]
    assert actions["repo_write_file"]["appliesTo"]["context"]["attributes"]["args"]["attributes"]["branch"] == {
        "type": "String",
        "required": True,
    }


def test_policy_validate_reports_counts_as_json(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "validate", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True
    assert summary["policies"] >= 5


def test_errors_are_one_line_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "missing.toml"), "tools", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cedargate: error: config file")
    assert err.count("\n") == 1


def test_the_demo_never_writes_into_a_folder_that_holds_something(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cedargate.toml").write_text("# my own config\n")
    assert main(["demo", "--workdir", str(tmp_path)]) == 2
    assert "is not an empty folder: give the demo a new or empty --workdir" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["cedargate.toml"]
    assert (tmp_path / "cedargate.toml").read_text() == "# my own config\n"


def test_demo_runs_the_scripted_session_and_the_trail_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "the demo"
    result = subprocess.run(
        [sys.executable, "-m", "cedargate", "demo", "--json", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "server")},
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    outcomes = [call["outcome"] for call in report["calls"]]
    assert outcomes.count("succeeded") >= 2
    assert "denied" in outcomes
    assert "invalid_arguments" in outcomes
    assert "approval_required" in outcomes
    denied = next(c for c in report["calls"] if c["outcome"] == "denied")
    assert "policy `" in denied["detail"]
    invalid = next(c for c in report["calls"] if c["outcome"] == "invalid_arguments")
    assert "field `" in invalid["detail"]
    assert report["audit"]["ok"] is True
    assert report["audit"]["events"] == len(report["calls"])
    # The approval it opens is one a person can decide: the demo's config names an approver.
    waiting = next(c for c in report["calls"] if c["outcome"] == "approval_required")
    found = re.search(r"Approval `(apr_\w+)` is pending", waiting["detail"])
    assert found is not None and "nobody can decide" not in waiting["detail"]
    config = str(workdir / "cedargate.toml")
    assert main(["--config", config, "approvals", "approve", found.group(1), "--as", "bob", "--note", "ok"]) == 0
    capsys.readouterr()
    assert main(["--config", config, "approvals", "show", found.group(1), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "approved" and shown["decided_by"] == "bob"


def _named_commands() -> list[str]:
    """Every `cedargate ...` command line the README or a message in the code tells someone to run."""
    sources = [ROOT / "README.md", *(ROOT / "server" / "cedargate").rglob("*.py")]
    found = {m.group(1) for path in sources for m in re.finditer(r"`(cedargate [^`\n]+)`", path.read_text())}
    return sorted(found)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _placeholder(word: str) -> bool:
    return word[:1] in ("{", "-") or word.isupper() or word == "..."


@pytest.mark.parametrize("line", _named_commands())
def test_every_command_the_docs_and_messages_name_exists_with_its_options(line: str) -> None:
    """A message that tells someone to run a command that is not there (or a flag it lacks) is a dead end.

    ``a|b`` names alternatives; an option is looked for on every alternative the line names.
    """
    parsers, rest = [build_parser()], [w.strip("[]") for w in line.split()[1:]]
    while rest:
        subcommands = {name: sub for parser in parsers for name, sub in _subcommands(parser).items()}
        if not subcommands:
            break
        missing = [w for w in rest[0].split("|") if w not in subcommands and not _placeholder(w)]
        assert not missing, f"`{line}`: no command {missing} after `{parsers[0].prog}`"
        named = [subcommands[w] for word in rest for w in word.split("|") if w in subcommands]
        if not named:
            break
        parsers, rest = named, rest[1:]
    known = _options(build_parser()).union(*(_options(parser) for parser in parsers))
    flags = {word.split("=")[0] for word in rest if word.startswith("-")}
    assert flags <= known, f"`{line}`: no option {sorted(flags - known)} on `{parsers[0].prog}`"


@pytest.mark.parametrize(
    ("relative", "command"),
    [
        ("cedargate.toml", ["tools", "list"]),
        ("tools/repo/extra.toml", ["tools", "list"]),
        ("policies/extra.cedar", ["policy", "validate"]),
        ("policies/tests/extra.toml", ["policy", "test"]),
    ],
)
def test_a_file_that_is_not_utf8_is_named_not_a_traceback(
    tree: Path, relative: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with open(tree / relative, "ab") as file:
        file.write(b"\n# caf\xe9\n")  # Latin-1, as an editor on another system might save it
    assert main(["--config", str(tree / "cedargate.toml"), *command]) == 2
    error = capsys.readouterr().err
    assert f"{tree / relative}: not UTF-8 text" in error and "save the file as UTF-8" in error


def test_serving_http_on_a_taken_port_says_so_before_anything_starts(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["--config", str(tree / "cedargate.toml"), "serve", "--transport", "http", "--port", str(port)])
    assert code == 2
    error = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}: " in error and "pick another --port" in error
    assert "serving" not in error and "Traceback" not in error
    assert not (tree / "audit.jsonl").exists()  # refused before the runtime (store, audit log) was built


def test_a_bad_principal_from_the_environment_names_the_variable(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEDARGATE_MODE", "sometimes")
    assert main(["--config", str(tree / "cedargate.toml"), "tools", "list"]) == 2
    error = capsys.readouterr().err
    assert "field `principal.mode`: input should be 'interactive' or 'autonomous'" in error
    assert "[principal] took $CEDARGATE_MODE from the environment" in error


def test_http_beyond_loopback_without_auth_is_refused_before_the_port_is_bound(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[tuple[str, int]] = []
    monkeypatch.setattr("cedargate.transport.listen_http", lambda host, port: bound.append((host, port)))
    command = ["--config", str(tree / "cedargate.toml"), "serve", "--transport", "http", "--host", "0.0.0.0"]
    assert main(command) == 2
    assert "serving HTTP on `0.0.0.0` needs bearer auth: add an [auth] table" in capsys.readouterr().err
    assert bound == []
