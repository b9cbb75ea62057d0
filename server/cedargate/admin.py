"""What the admin commands report: tools, the generated schema, policy validation.

These load manifests and policies exactly as the server does, without opening the audit log
or starting the AWS sandbox.
"""

from __future__ import annotations

from typing import Any

from cedargate.catalog import ToolCatalog, load_catalog
from cedargate.cedar_schema import schema_json
from cedargate.config import Config
from cedargate.manifest import ToolManifest
from cedargate.runtime import handler_registry, load_tools_and_policies
from cedargate.tool_lock import read_lock_or_empty


def tools_catalog(config: Config) -> ToolCatalog:
    """The manifests on disk, checked as the server checks them (the tools lock aside)."""
    return load_catalog(config.tools_dir, check=handler_registry(None, config).check)


def _handler_label(manifest: ToolManifest) -> str:
    spec = manifest.handler
    if spec.kind == "aws":
        return f"aws {spec.service}:{spec.operation}"
    return f"repo {spec.operation}"


def describe_tools(config: Config) -> list[dict[str, Any]]:
    """Each manifest; ``locked`` says whether the tools lock records it as it is (``None``: no lock)."""
    locked = None if config.tools_lock is None else read_lock_or_empty(config.tools_lock)
    return [
        {
            "name": m.name,
            "risk": m.risk.value,
            "handler": _handler_label(m),
            "duty": m.duty,
            "annotations": m.annotations.model_dump(by_alias=True),
            "manifest_hash": m.content_hash,
            "source": str(m.source),
            "locked": None if locked is None else locked.get(m.name) == m.content_hash,
        }
        for m in tools_catalog(config)
    ]


def generated_schema_text(config: Config) -> str:
    return schema_json(tools_catalog(config))


def validate_policies(config: Config) -> dict[str, Any]:
    catalog, policies = load_tools_and_policies(config, handler_registry(None, config))
    return {
        "ok": True,
        "tools": len(catalog),
        "policies": len(policies.info),
        "files": [str(f) for f in policies.files],
    }
