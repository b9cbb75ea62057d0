"""Assembling a server from its config: catalog, schema, policies, authorizer, store, audit, handlers.

Everything that can be wrong with the files on disk is found here, before the first call: a
broken manifest, a policy that does not parse or validate, a missing principal, a store that
cannot be reached or migrated, an audit log that cannot be opened. Start-up stops with the
place named, and whatever was opened before the failure is closed again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from cedargate.approvals import ApprovalQueue
from cedargate.audit.checkpoint import require_consistent
from cedargate.audit.fanout import FanoutAudit
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.sinks import secondary_sinks
from cedargate.aws_session import AwsClients
from cedargate.budget import Budget
from cedargate.catalog import ToolCatalog, load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.config import Config
from cedargate.gate import Gate
from cedargate.handlers import HandlerRegistry
from cedargate.handlers.aws import AwsHandlers
from cedargate.handlers.repo import RepoHandlers
from cedargate.holds import Holds
from cedargate.identity import Principal, principal_from_config
from cedargate.pipeline import Pipeline
from cedargate.policy_path_classes import refuse_undefined_path_classes
from cedargate.policy_set import PolicySet, load_policy_set
from cedargate.reload import PolicyReloader
from cedargate.snapshot import SnapshotHolder, build_snapshot
from cedargate.store import Store, open_store


@dataclass
class Runtime:
    """A started server's parts; ``close`` releases the audit file, the store and the sandbox."""

    config: Config
    snapshots: SnapshotHolder
    principal: Principal | None
    """The config principal; ``None`` only when ``[auth]`` is set (every HTTP call brings its own)."""
    pipeline: Pipeline
    audit: FanoutAudit
    aws: AwsClients
    handlers: HandlerRegistry
    reloader: PolicyReloader
    store: Store

    @property
    def catalog(self) -> ToolCatalog:
        """The tools in force now (hot reload may replace them between calls)."""
        return self.snapshots.current.catalog

    @property
    def policies(self) -> PolicySet:
        return self.snapshots.current.policies

    def close(self) -> None:
        self.audit.close()
        self.aws.close()
        self.store.close()


def load_tools_and_policies(config: Config, registry: HandlerRegistry) -> tuple[ToolCatalog, PolicySet]:
    """The catalog and the policy set validated against the schema generated from it."""
    catalog = load_catalog(config.tools_dir, check=registry.check)
    policies = load_policy_set(config.policies_dir, build_schema(catalog))
    refuse_undefined_path_classes(policies, config.defined_path_classes)
    return catalog, policies


def handler_registry(aws: AwsClients | None, config: Config | None = None) -> HandlerRegistry:
    """Every handler family; without AWS clients the registry can check manifests but not run AWS tools.

    Repository tools are checked against ``config``'s repositories and AWS manifests against its
    duties (or, without a config, the clients' duties).
    """
    repositories = config.repositories if config is not None else ()
    duties = config.aws.duties if config is not None else None
    return HandlerRegistry({"repo": RepoHandlers(repositories), "aws": AwsHandlers(aws, duties)})


RegistryFactory = Callable[[AwsClients | None, Config | None], HandlerRegistry]
"""Builds the handler families a runtime serves (``handler_registry`` unless a caller adds its own)."""


def build_runtime(config: Config, registry_for: RegistryFactory = handler_registry) -> Runtime:
    # Over stdio the config names the principal; with [auth], every HTTP call brings its own.
    principal = principal_from_config(config) if config.principal is not None or config.auth is None else None
    with ExitStack() as opened:
        aws = AwsClients(config.aws)
        opened.callback(aws.close)
        registry = registry_for(aws, config)
        snapshots = SnapshotHolder(build_snapshot(config, registry))
        store = open_store(config.store)
        opened.callback(store.close)
        if config.audit.checkpoints is not None:
            checkpoints = config.audit.checkpoints
            require_consistent(config.audit.path, checkpoints.path, checkpoints.public_key)
        audit = FanoutAudit(
            JsonlAuditLog(config.audit.path, fsync=config.audit.fsync), secondary_sinks(config.audit, aws, store)
        )
        opened.pop_all()  # everything opened: the runtime owns it now
    pipeline = Pipeline(
        config,
        snapshots,
        registry,
        audit,
        budget=Budget(store, config.budgets),
        gate=Gate(ApprovalQueue(store, config.approvals)),
        holds=Holds(store),
    )
    reloader = PolicyReloader(config, registry, snapshots, audit)
    return Runtime(config, snapshots, principal, pipeline, audit, aws, registry, reloader, store)
