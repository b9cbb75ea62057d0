"""Step 1, identify: who is calling, for whom, how, and within which session and task.

Over stdio the principal comes from the config (with environment overrides); there is no
anonymous agent: a server with no principal configured does not start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from cedargate.config import Config
from cedargate.errors import ConfigError


class Principal(BaseModel):
    """The calling agent as policies and the audit trail see it."""

    model_config = ConfigDict(frozen=True)

    agent: str
    team: str
    on_behalf_of: str
    mode: Literal["interactive", "autonomous"]
    task: str


def principal_from_config(config: Config) -> Principal:
    """The stdio principal; fails with what to set when none is configured."""
    if config.principal is None:
        raise ConfigError(
            "no principal configured: add a [principal] table (agent, team, on_behalf_of) to the config "
            "or set CEDARGATE_AGENT, CEDARGATE_TEAM and CEDARGATE_USER"
        )
    p = config.principal
    return Principal(agent=p.agent, team=p.team, on_behalf_of=p.on_behalf_of, mode=p.mode, task=p.task)
