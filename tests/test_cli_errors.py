"""Command-line mistakes get one line naming the input and what to do: no traceback, nothing overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import ROOT

from cedargate.audit.checkpoint import generate_keypair
from cedargate.audit.event import Outcome
from cedargate.cli import build_parser, main
from cedargate.cli.audit import OUTCOMES
from cedargate.config import load_config
from cedargate.errors import ManifestError

EVENT = {
    "event_id": "e-1",
    "time": "2026-01-31T09:00:00+00:00",
    "tool": "repo_read_file",
    "outcome": "succeeded",
    "principal": {"agent": "codex", "on_behalf_of": "alice", "team": "web", "mode": "interactive"},
    "decision": {"effect": "allow", "policies": [], "errors": []},
}


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _argparse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return _error(capsys)


def test_keygen_refuses_one_file_for_both_keys_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.pem"
    assert main(["audit", "keygen", "--private-key", str(key), "--public-key", str(tmp_path / "." / "k.pem")]) == 2
    assert "is named for both keys" in _error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_keygen_refuses_an_existing_public_key_and_leaves_it_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_keypair(tmp_path / "old.pem", tmp_path / "old.pub")
    before = (tmp_path / "old.pub").read_bytes()
    assert (
        main(["audit", "keygen", "--private-key", str(tmp_path / "new.pem"), "--public-key", str(tmp_path / "old.pub")])
        == 2
    )
    assert f"`{tmp_path / 'old.pub'}` already exists" in _error(capsys)
    assert (tmp_path / "old.pub").read_bytes() == before
    assert not (tmp_path / "new.pem").exists()


@pytest.mark.parametrize("port", ["99999", "65536", "-5", "http"])
def test_serve_refuses_a_port_out_of_range_before_reading_the_config(
    tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(tmp_path / "missing.toml"), "serve", "--transport", "http", "--port", port]
    last = _argparse_error(argv, capsys).splitlines()[-1]
    assert f"argument --port: `{port}` is not" in last and "--host" not in last


def test_serve_accepts_port_0_for_any_free_port() -> None:
    assert build_parser().parse_args(["serve", "--transport", "http", "--port", "0"]).port == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["audit", "tail", "-n", "-2"], "argument -n/--lines: `-2`: give a whole number of 0 or more"),
        (["audit", "query", "--limit", "-1"], "argument --limit: `-1`: give a whole number of at least 1"),
        (["audit", "query", "--limit", "0"], "argument --limit: `0`: give a whole number of at least 1"),
        (["actions", "-n", "0"], "argument -n/--limit: `0`: give a whole number of at least 1"),
        (["audit", "checkpoint", "--key", "k", "--every", "0"], "`0`: give a number of seconds greater than 0"),
        (["audit", "checkpoint", "--key", "k", "--every", "-1"], "`-1`: give a number of seconds greater than 0"),
        (["audit", "checkpoint", "--key", "k", "--every", "nan"], "`nan`: give a number of seconds greater than 0"),
        (["audit", "query", "--decision", "maybe"], "argument --decision: invalid choice: 'maybe'"),
        (["audit", "query", "--outcome", "nope"], "argument --outcome: invalid choice: 'nope'"),
    ],
)
def test_counts_intervals_and_filter_values_are_checked_by_the_parser(
    tmp_path: Path, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in _argparse_error(["--config", str(tmp_path / "missing.toml"), *argv], capsys)


def test_the_outcome_choices_are_the_audit_outcomes() -> None:
    assert tuple(o.value for o in Outcome) == OUTCOMES


@pytest.mark.parametrize(
    "line",
    [
        '{"not": "an event"}',
        '{"time": "x"}',
        json.dumps({**EVENT, "time": "x"}),
        json.dumps({**EVENT, "principal": "a"}),
    ],
)
@pytest.mark.parametrize(
    "command",
    [["tail"], ["query"], ["query", "--since", "2026-01-01T00:00Z"], ["export"]],
    ids=" ".join,
)
def test_a_json_line_that_is_not_an_event_is_named_with_what_to_run(
    tmp_path: Path, line: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps(EVENT) + "\n" + line + "\n")
    assert main(["audit", *command, "--log", str(log)]) == 2
    out, err = capsys.readouterr()
    assert f"audit log `{log}` line 2 is not an audit event" in err
    assert f"run `cedargate audit verify --log {log}`" in err
    assert "Traceback" not in err and out == ""


def test_following_the_tail_names_an_appended_line_that_is_not_an_event(tmp_path: Path) -> None:
    from cedargate.audit.query import AuditFilter
    from cedargate.cli.audit import _print_appended
    from cedargate.errors import CedargateError

    log = tmp_path / "audit.jsonl"
    first = json.dumps(EVENT) + "\n"
    log.write_text(first + '{"time": "x"}\n')
    with pytest.raises(CedargateError, match=f"line at byte {len(first)} is not an audit event"):
        _print_appended(log, 0, AuditFilter(), as_json=True)


def _output_argv(command: str, named: Path, folder: Path) -> list[str]:
    """``command``'s line writing to ``named``, with what else it needs found in ``folder``."""
    log = str(folder / "audit.jsonl")
    if command == "checkpoint":
        generate_keypair(folder / "signer.pem", folder / "signer.pub")
        return ["audit", "checkpoint", "--key", str(folder / "signer.pem"), "--log", log, "--checkpoints", str(named)]
    return {
        "export": ["audit", "export", "--log", log, "--output", str(named)],
        "schema": ["policy", "schema", "--output", str(named)],
        "tools new": [
            "tools",
            "new",
            "aws",
            "s3",
            "ListObjectsV2",
            "--risk",
            "read",
            "--force",
            "--output",
            str(named),
        ],
    }[command]


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("export", "folder"),
        ("export", "missing"),
        ("export", "file"),
        ("schema", "folder"),
        ("schema", "missing"),
        ("tools new", "folder"),
        ("tools new", "file"),
        ("checkpoint", "folder"),
        ("checkpoint", "file"),
    ],
)
def test_an_output_path_that_is_a_folder_or_in_a_missing_folder_is_refused(
    tree: Path, command: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tree / "out"
    out.mkdir()
    (out / "audit.jsonl").write_text(json.dumps(EVENT) + "\n")
    named, expected = {
        "folder": (out, "is a folder: name a file"),
        "missing": (out / "nodir" / "out", f"folder `{out / 'nodir'}` does not exist"),
        "file": (out / "audit.jsonl" / "out", f"`{out / 'audit.jsonl'}` is a file, not a folder"),
    }[kind]
    argv = _output_argv(command, named, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["--config", str(tree / "cedargate.toml"), *argv]) == 2
    err = _error(capsys)
    assert f"`{named}`" in err and expected in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_tools_lock_refuses_a_lock_path_that_is_a_folder_and_leaves_no_temporary_file(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tree / "cedargate.toml"
    config.write_text('tools_lock = "tools/tools.lock"\n' + config.read_text())
    (tree / "tools" / "tools.lock").unlink()  # the shipped lock, copied with the manifests
    (tree / "tools" / "tools.lock").mkdir()
    assert main(["--config", str(config), "tools", "lock"]) == 2
    assert f"tools lock `{tree / 'tools' / 'tools.lock'}` is a folder" in _error(capsys)
    assert not (tree / "tools" / ".tools.lock.tmp").exists()


def test_an_empty_tools_lock_names_a_few_tools_and_counts_the_rest(tree: Path) -> None:
    from cedargate.runtime import build_runtime

    config = tree / "cedargate.toml"
    config.write_text('tools_lock = "tools/tools.lock"\n' + config.read_text())
    (tree / "tools" / "tools.lock").write_text("")
    with pytest.raises(ManifestError) as refused:
        build_runtime(load_config(config, environ={}))
    message = str(refused.value)
    assert message.count("is not in the lock") == 5
    assert "more (`cedargate tools lock --check` lists them)" in message


def test_a_closed_pipe_ends_the_listing_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cedargate", "--config", str(ROOT / "cedargate.toml"), "tools", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "server")},
    )
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line, as `| head -0` would be
    _, err = process.communicate(timeout=120)
    assert err == b""
    assert process.returncode == 1


@pytest.mark.parametrize("argv", [["audit", "verify", "--database"], ["audit", "query", "--source", "database"]])
def test_reading_the_audit_table_without_a_database_sink_says_to_configure_one(
    tree: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tree / "cedargate.toml"), *argv]) == 2
    assert 'no `[[audit.sinks]]` with `kind = "database"` is configured' in _error(capsys)


def test_config_may_follow_the_command(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "list", "--json", "--config", str(tree / "cedargate.toml")]) == 0
    assert json.loads(capsys.readouterr().out)


def test_config_before_the_command_is_not_overwritten_by_the_commands_default() -> None:
    assert build_parser().parse_args(["--config", "a.toml", "doctor"]).config == "a.toml"
    assert build_parser().parse_args(["--config", "a.toml", "doctor", "--config", "b.toml"]).config == "b.toml"


def test_approvals_show_prints_json_values_not_python_ones(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cedargate.approvals import ApprovalQueue, ApprovalRequest
    from cedargate.store import open_store

    config = load_config(tree / "cedargate.toml", environ={})
    store = open_store(config.store)
    try:
        approval = ApprovalQueue(store, config.approvals).open(
            ApprovalRequest(
                tool="repo_delete_branch",
                agent="codex",
                team="web",
                on_behalf_of="alice",
                task="t",
                arguments={},
                args_digest="d",
                resource="Repository::acme/web",
                environment="dev",
                policies=["p"],
                reason="r",
                approver_groups=["sre"],
                request_event_id="e",
            )
        )
    finally:
        store.close()
    assert main(["--config", str(tree / "cedargate.toml"), "approvals", "show", approval.id]) == 0
    out = capsys.readouterr().out
    assert "decided_by: null" in out and "self_approvable: false" in out and "tool: repo_delete_branch" in out
    assert "None" not in out and "False" not in out
