"""``cedargate actions``: what operators did, read back from the store, newest first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.governed_tree import governed_config

from cedargate.cli import main
from cedargate.config import StoreConfig


def test_operators_actions_are_listed_newest_first_with_who_and_why(
    tree: Path, store_config: StoreConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(governed_config(tree, store_config))]
    assert main([*config, "revoke", "agent", "codex-demo", "--as", "bob", "--reason", "leaked token"]) == 0
    assert main([*config, "freeze", "--environment", "prod", "--as", "erin", "--reason", "incident 42"]) == 0
    assert main([*config, "reinstate", "agent", "codex-demo", "--as", "bob", "--reason", "token rotated"]) == 0
    capsys.readouterr()
    assert main([*config, "actions", "--json"]) == 0
    listed = [(a["actor"], a["action"], a["subject"], a["reason"]) for a in json.loads(capsys.readouterr().out)]
    assert listed == [
        ("bob", "reinstate_agent", "codex-demo", "token rotated"),
        ("erin", "freeze_environment", "prod", "incident 42"),
        ("bob", "revoke_agent", "codex-demo", "leaked token"),
    ]
    assert main([*config, "actions", "--actor", "bob", "-n", "1", "--json"]) == 0
    assert [a["action"] for a in json.loads(capsys.readouterr().out)] == ["reinstate_agent"]
    assert main([*config, "actions"]) == 0
    assert "erin  freeze_environment prod  (incident 42)" in capsys.readouterr().out


def test_no_actions_say_so(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(governed_config(tree, StoreConfig(path=tree / "state.db")))]
    assert main([*config, "actions"]) == 0
    assert capsys.readouterr().out == "no actions recorded\n"


def test_holds_as_json_is_only_json(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A script reads `--json`: the human lines were printed after it whenever a hold existed."""
    config = ["--config", str(governed_config(tree, StoreConfig(path=tree / "state.db")))]
    assert main([*config, "freeze", "--environment", "prod", "--as", "erin", "--reason", "incident 42"]) == 0
    capsys.readouterr()
    assert main([*config, "holds", "--json"]) == 0
    (hold,) = json.loads(capsys.readouterr().out)
    assert (hold["kind"], hold["subject"], hold["by_user"]) == ("environment", "prod", "erin")
    assert main([*config, "actions", "--json"]) == 0
    (action,) = json.loads(capsys.readouterr().out)
    assert hold["at"] == action["at"]  # one record, one way of writing its time for scripts
