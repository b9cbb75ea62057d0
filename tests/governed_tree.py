"""What the governance-state tests share: config edits (a store, approver groups, caps), the CLI, a delete."""

from __future__ import annotations

import json
from pathlib import Path

from mcp import Client

from cedargate.cli import main
from cedargate.config import StoreConfig
from cedargate.runtime import Runtime
from cedargate.server import APPROVAL_META_KEY, build_server

DELETE = "repo_delete_branch"


def store_toml(store: StoreConfig) -> str:
    if store.url:
        return f"[store]\nurl = {json.dumps(store.url)}\n"
    return f"[store]\npath = {json.dumps(str(store.path))}\n"


def governed_config(tree: Path, store: StoreConfig, *, staging: bool = True, extra: str = "") -> Path:
    """The demo config with acme/web in staging (deletes need an `sre`), bob and erin as SREs."""
    path = tree / "cedargate.toml"
    text = path.read_text()
    if staging:
        text = text.replace(
            'environment = "dev"\nowner_team = "storefront"', 'environment = "staging"\nowner_team = "storefront"'
        )
    text += (
        "\n"
        + store_toml(store)
        + '\n[approvals]\nttl_minutes = 30\n\n[approvals.groups]\nsre = ["bob", "erin", "alice"]\n'
    )
    path.write_text(text + extra)
    return path


def cli_on(runtime: Runtime, *args: str) -> int:
    """``cedargate ARGS`` against the runtime's own config, as an operator runs it."""
    return main(["--config", str(runtime.config.base_dir / "cedargate.toml"), *args])


async def delete_branch(
    runtime: Runtime, branch: str = "agent/old", *, approval: str | None = None
) -> tuple[bool, str]:
    """One ``repo_delete_branch`` call through a client session: whether it failed, and its text."""
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(
            DELETE,
            {"repository": "acme/web", "branch": branch},
            meta={APPROVAL_META_KEY: approval} if approval else None,
        )
    return bool(result.is_error), result.content[0].text  # type: ignore[union-attr]
