"""Assembling a server from its config: catalog, schema, policies, authorizer, audit, handlers.

Everything that can be wrong with the files on disk is found here, before the first call: a
broken manifest, a policy that does not parse or validate, a missing principal, an audit log
that cannot be opened. Start-up stops with the place named.
"""

from __future__ import annotations

from dataclasses import dataclass

from cedargate.approvals import ApprovalQueue
from cedargate.audit.log import JsonlAuditLog
from cedargate.authorize import Authorizer
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
from cedargate.policy_set import PolicySet, load_policy_set
from cedargate.store import Store, open_store


@dataclass
class Runtime:
    """A started server's parts; ``close`` releases the audit file and the sandbox."""

    config: Config
    catalog: ToolCatalog
    policies: PolicySet
    principal: Principal | None
    """The config principal; ``None`` only when ``[auth]`` is set (every HTTP call brings its own)."""
    pipeline: Pipeline
    audit: JsonlAuditLog
    aws: AwsClients
    store: Store | None = None

    def close(self) -> None:
        self.audit.close()
        self.aws.close()
        if self.store is not None:
            self.store.close()


def load_tools_and_policies(config: Config, registry: HandlerRegistry) -> tuple[ToolCatalog, PolicySet]:
    """The catalog and the policy set validated against the schema generated from it."""
    catalog = load_catalog(config.tools_dir, check=registry.check)
    policies = load_policy_set(config.policies_dir, build_schema(catalog))
    return catalog, policies


def handler_registry(aws: AwsClients | None) -> HandlerRegistry:
    """Every handler family; without AWS clients the registry can check manifests but not run AWS tools."""
    return HandlerRegistry({"repo": RepoHandlers(), "aws": AwsHandlers(aws)})


def build_runtime(config: Config) -> Runtime:
    principal = principal_from_config(config) if config.principal is not None or config.auth is None else None
    aws = AwsClients(config.aws)
    try:
        registry = handler_registry(aws)
        catalog, policies = load_tools_and_policies(config, registry)
        store = open_store(config.store)
    except BaseException:
        aws.close()
        raise
    try:
        audit = JsonlAuditLog(config.audit.path, fsync=config.audit.fsync)
    except BaseException:
        aws.close()
        store.close()
        raise
    gate = Gate(ApprovalQueue(store, config.approvals))
    budget = Budget(store, config.budgets)
    pipeline = Pipeline(
        config, catalog, Authorizer(policies, config), registry, audit, budget=budget, gate=gate, holds=Holds(store)
    )
    return Runtime(config, catalog, policies, principal, pipeline, audit, aws, store)
