"""Fixtures of the adversarial suite: one governed demo tree per module (fuzzing reuses it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.adversarial.harness import Governed, governed, make_tree


@pytest.fixture(scope="module")
def module_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree")).parent


@pytest.fixture(scope="module")
def gov(module_tree: Path) -> Iterator[Governed]:
    g = governed(module_tree / "cedargate.toml")
    yield g
    g.close()
