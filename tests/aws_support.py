"""Helpers for the AWS tests: a demo tree with private tools and policies, and one-call sessions."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp import Client
from tests.conftest import ROOT, audit_events

from cedargate.aws_sandbox import STAGING_ACCOUNT
from cedargate.demo import write_demo_tree
from cedargate.runtime import Runtime
from cedargate.server import build_server

ARTIFACTS = f"acme-staging-artifacts-{STAGING_ACCOUNT}"
SESSION = "cedargate.codex-demo.demo-timeout"
NOW = datetime.now(UTC)


def make_tree(base: Path, principal_team: str = "storefront") -> Path:
    shutil.copytree(ROOT / "tools", base / "tools")
    shutil.copytree(ROOT / "policies", base / "policies")
    config = write_demo_tree(base)
    text = config.read_text().replace(json.dumps(str(ROOT / "tools")), '"tools"')
    text = text.replace(json.dumps(str(ROOT / "policies")), '"policies"')
    config.write_text(text.replace('team = "storefront"', f'team = "{principal_team}"', 1))
    return config


async def call(runtime: Runtime, tool: str, args: dict[str, Any], mode: str = "legacy") -> tuple[Any, dict[str, Any]]:
    async with Client(build_server(runtime), mode=mode) as client:
        result = await client.call_tool(tool, args)
    return result, audit_events(runtime.config.audit.path)[-1]


def text_of(result: Any) -> str:
    return str(result.content[0].text)
