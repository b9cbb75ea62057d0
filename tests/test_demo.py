"""The demo's approval is one a person can decide: its config names an approver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import ROOT

from cedargate.cli import main


def test_the_approval_the_demo_opens_can_be_decided_by_its_approver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "the demo"
    demo = subprocess.run(
        [sys.executable, "-m", "cedargate", "demo", "--json", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "server")},
        timeout=180,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    waiting = next(c for c in json.loads(demo.stdout)["calls"] if c["outcome"] == "approval_required")
    assert "nobody can decide" not in waiting["detail"]
    found = re.search(r"Approval `(apr_\w+)` is pending", waiting["detail"])
    assert found is not None, waiting["detail"]

    config = str(workdir / "cedargate.toml")
    assert main(["--config", config, "approvals", "approve", found.group(1), "--as", "bob", "--note", "ok"]) == 0
    capsys.readouterr()
    assert main(["--config", config, "approvals", "show", found.group(1), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "approved" and shown["decided_by"] == "bob"
