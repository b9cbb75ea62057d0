"""Snapshots of everything published: each tool's schema and annotations, and the Cedar schema.

A change to what agents see or what policies are written against shows in review as a diff
of these files. Regenerate them with ``CEDARGATE_UPDATE_SNAPSHOTS=1 pytest tests/test_snapshots.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ROOT

from cedargate.catalog import ToolCatalog, load_catalog
from cedargate.cedar_schema import schema_json
from cedargate.config import load_config
from cedargate.runtime import handler_registry

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _compare(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("CEDARGATE_UPDATE_SNAPSHOTS") == "1":
        path.write_text(actual)
        pytest.skip(f"snapshot `{name}` rewritten")
    assert path.exists(), f"no snapshot `{name}`: run with CEDARGATE_UPDATE_SNAPSHOTS=1 to create it"
    assert actual == path.read_text(), f"`{name}` changed: review the diff, then regenerate the snapshot"


def _shipped_catalog() -> ToolCatalog:
    config = load_config(ROOT / "cedargate.toml", environ={})
    return load_catalog(config.tools_dir, check=handler_registry(None, config).check)


def _published_tools() -> list[dict[str, Any]]:
    catalog = _shipped_catalog()
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in catalog.mcp_tools]


def test_published_tools_match_the_snapshot() -> None:
    _compare("tools.json", json.dumps(_published_tools(), indent=2, sort_keys=True) + "\n")


def test_generated_cedar_schema_matches_the_golden_file() -> None:
    catalog = _shipped_catalog()
    _compare("cedar_schema.json", schema_json(catalog))


def test_every_published_tool_sets_all_four_annotations() -> None:
    for tool in _published_tools():
        hints = tool["annotations"]
        for hint in ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"):
            assert isinstance(hints.get(hint), bool), f"{tool['name']} lacks {hint}"
