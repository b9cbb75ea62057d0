"""Building the configured secondary audit sinks."""

from __future__ import annotations

from cedargate.audit.fanout import SecondarySink
from cedargate.aws_session import AwsClients
from cedargate.config import AuditConfig, CloudWatchSinkConfig, DatabaseSinkConfig
from cedargate.errors import ConfigError
from cedargate.store import Store


def secondary_sinks(config: AuditConfig, aws: AwsClients, store: Store | None = None) -> list[SecondarySink]:
    """One sink per ``[[audit.sinks]]`` entry, in the order configured; ``database`` writes to ``store``."""
    sinks: list[SecondarySink] = []
    for entry in config.sinks:
        if isinstance(entry, CloudWatchSinkConfig):
            from cedargate.audit.cloudwatch import CloudWatchSink

            sinks.append(CloudWatchSink(aws.client("logs"), entry.log_group, entry.log_stream))
        elif isinstance(entry, DatabaseSinkConfig):
            from cedargate.audit.database import DatabaseSink

            if store is None:
                raise ConfigError('`[[audit.sinks]] kind = "database"` needs the `[store]` database, none was opened')
            sinks.append(DatabaseSink(store))
        else:
            from cedargate.audit.otel import OpenTelemetrySink

            sinks.append(OpenTelemetrySink())
    return sinks
