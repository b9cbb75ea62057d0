"""Config edits shared by the governance-state tests: a store, approver groups, caps."""

from __future__ import annotations

import json
from pathlib import Path

from cedargate.config import StoreConfig


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
