"""Step 7, execute: the handlers that do a tool's work, looked up by the manifest's handler spec.

Deny by default, written as data: a manifest whose handler is not in the registry does not
load, so no tool can be published without code behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cedargate.identity import Principal
from cedargate.manifest import ToolManifest
from cedargate.progress import ProgressReport, no_progress
from cedargate.resolve import Resource


@dataclass(frozen=True)
class HandlerCall:
    """Everything a handler may use: validated arguments, the resolved resource, who and why."""

    manifest: ToolManifest
    args: Mapping[str, Any]
    resource: Resource
    principal: Principal
    event_id: str
    session_id: str
    execution: dict[str, Any] = field(default_factory=dict)
    """Facts about how the handler ran (duty identity, role session, sandbox, ...), for the audit event."""
    context_sources: tuple[str, ...] = ()
    """Event ids of the session's successful reads before this call (provenance for pull requests)."""
    progress: ProgressReport = no_progress
    """Tells the client how long work is going (a test run); a no-op unless it asked."""
    changed_paths: frozenset[str] = frozenset()
    """The paths the policy decision saw the call change (``context.changes.paths``); a handler changes no other."""


Handler = Callable[[HandlerCall], dict[str, Any]]
"""A synchronous handler: returns the JSON-ready result, or raises ``HandlerError``."""


class HandlerFamily:
    """One kind of handler (``repo``, ``aws``): its dispatcher and its manifest checks."""

    kind: str

    def check(self, manifest: ToolManifest) -> None:
        """Raise ``ValueError`` naming the manifest field that this family cannot serve."""
        raise NotImplementedError

    def handler_for(self, manifest: ToolManifest) -> Handler:
        raise NotImplementedError


class HandlerRegistry:
    """The families cedargate can run, keyed by the manifest's ``handler.kind``."""

    def __init__(self, families: Mapping[str, HandlerFamily]) -> None:
        self._families = dict(families)

    @property
    def families(self) -> Mapping[str, HandlerFamily]:
        return dict(self._families)

    def check(self, manifest: ToolManifest) -> None:
        family = self._families.get(manifest.handler.kind)
        if family is None:
            raise ValueError(f"field `handler.kind`: no handler family `{manifest.handler.kind}` in this server")
        family.check(manifest)

    def handler_for(self, manifest: ToolManifest) -> Handler:
        return self._families[manifest.handler.kind].handler_for(manifest)
