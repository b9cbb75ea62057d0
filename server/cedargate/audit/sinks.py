"""Building the configured secondary audit sinks."""

from __future__ import annotations

from cedargate.audit.fanout import SecondarySink
from cedargate.aws_session import AwsClients
from cedargate.config import AuditConfig, CloudWatchSinkConfig


def secondary_sinks(config: AuditConfig, aws: AwsClients) -> list[SecondarySink]:
    """One sink per ``[[audit.sinks]]`` entry, in the order configured."""
    sinks: list[SecondarySink] = []
    for entry in config.sinks:
        if isinstance(entry, CloudWatchSinkConfig):
            from cedargate.audit.cloudwatch import CloudWatchSink

            sinks.append(CloudWatchSink(aws.client("logs"), entry.log_group, entry.log_stream))
        else:
            from cedargate.audit.otel import OpenTelemetrySink

            sinks.append(OpenTelemetrySink())
    return sinks
