#!/usr/bin/env python3
"""Set up a virtual environment in .venv and run cedargate's demo or its tests.

Usage: python3 scripts/bootstrap.py demo | test [pytest args...]
Needs only python3 (3.11+) and git on the machine; everything else comes from PyPI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_venv() -> None:
    stamp = VENV / ".cedargate-installed"
    inputs = (ROOT / "pyproject.toml", ROOT / "constraints.txt")
    if stamp.exists() and all(stamp.stat().st_mtime >= p.stat().st_mtime for p in inputs):
        return
    print(f"bootstrap: creating {VENV} and installing cedargate with its test tools", file=sys.stderr)
    if not (BIN / "python").exists():  # reuse a virtualenv made by hand; only fill it in
        venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # constraints.txt pins every dependency to the versions the suite last passed with
    # (tool schemas derived from botocore's models are snapshot-tested, for one).
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"], check=True)
    stamp.touch()


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script is what tells users of older Pythons
        print(f"cedargate needs Python 3.11 or newer; this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ensure_venv()
    if argv[0] == "demo":
        return subprocess.call([str(BIN / "cedargate"), "demo", *argv[1:]], cwd=ROOT)
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
