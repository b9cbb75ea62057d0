"""The catalog and policies in force, as one immutable snapshot swapped whole.

A call reads the snapshot once, at its start, and uses that snapshot's catalog and
authorizers to the end: a reload between two calls never mixes an old tool list with new
policies. Swapping is a single reference assignment under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from cedargate.authorize import Authorizer
from cedargate.catalog import ToolCatalog, load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.config import Config
from cedargate.errors import PolicyError
from cedargate.handlers import HandlerRegistry
from cedargate.policy_path_classes import refuse_undefined_path_classes
from cedargate.policy_set import PolicySet, load_policy_set, policy_files
from cedargate.shadow import ShadowingAuthorizer
from cedargate.tool_lock import enforce_lock


@dataclass(frozen=True)
class Snapshot:
    """One consistent generation of tools and policies."""

    generation: int
    catalog: ToolCatalog
    policies: PolicySet
    """Every policy file, shadow files included."""
    authorizer: ShadowingAuthorizer

    @property
    def files(self) -> tuple[Path, ...]:
        return self.policies.files


def shadow_paths(config: Config) -> frozenset[Path]:
    """The configured shadow files, each required to exist (a typo would silently enforce nothing new)."""
    present = set(policy_files(config.policies_dir))
    paths = set()
    for name in config.policy.shadow_files:
        path = config.policies_dir / name
        if path not in present:
            raise PolicyError(
                f"config `[policy] shadow_files`: `{name}` is not a policy file in `{config.policies_dir}`"
            )
        paths.add(path)
    return frozenset(paths)


def build_snapshot(
    config: Config, registry: HandlerRegistry, generation: int = 1, *, path_classes: Collection[str] | None = None
) -> Snapshot:
    """Load and validate tools and policies from disk; raises and changes nothing when any is wrong.

    ``path_classes`` are the classes policies may ask for (by default those ``config`` defines).
    """
    catalog = load_catalog(config.tools_dir, check=registry.check)
    if config.tools_lock is not None:
        enforce_lock(catalog, config.tools_lock)
    schema = build_schema(catalog)
    policies = load_policy_set(config.policies_dir, schema)
    refuse_undefined_path_classes(policies, config.defined_path_classes if path_classes is None else path_classes)
    shadowed = shadow_paths(config)
    enforcing = Authorizer(load_policy_set(config.policies_dir, schema, exclude=shadowed), config) if shadowed else None
    authorizer = ShadowingAuthorizer(
        Authorizer(policies, config), enforcing, frozenset(config.policy.shadow_environments)
    )
    return Snapshot(generation, catalog, policies, authorizer)


class SnapshotHolder:
    """The snapshot in force; readers take ``current`` once per call."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._snapshot

    def swap(self, snapshot: Snapshot) -> Snapshot:
        """Put ``snapshot`` in force; returns the one it replaced."""
        with self._lock:
            previous, self._snapshot = self._snapshot, snapshot
        return previous
