"""Building the Cedar entity graph from the config and the calling principal.

Kept apart from evaluation: the graph of teams, environments, repositories and accounts is
built once per config, and each principal adds its agent, user and team on top.
"""

from __future__ import annotations

from typing import Any

from cedargate.cedar_types import AGENT, AWS_ACCOUNT, ENVIRONMENT, REPOSITORY, TEAM, USER, EntityRef
from cedargate.config import Config
from cedargate.identity import Principal


def _entity(
    ref: EntityRef, attrs: dict[str, Any] | None = None, parents: list[EntityRef] | None = None
) -> dict[str, Any]:
    return {"uid": ref.to_json(), "attrs": attrs or {}, "parents": [p.to_json() for p in parents or []]}


def resource_entities(config: Config) -> list[dict[str, Any]]:
    """Environments, teams, repositories and AWS accounts named in the config."""
    teams = {r.owner_team for r in config.repositories}
    entities = [_entity(EntityRef(ENVIRONMENT, env)) for env in sorted(config.environments)]
    entities += [_entity(EntityRef(TEAM, team)) for team in sorted(teams)]
    for repo in config.repositories:
        attrs = {
            "name": repo.name,
            "owner_team": {"__entity": EntityRef(TEAM, repo.owner_team).to_json()},
            "protected_branches": list(repo.protected_branches),
        }
        entities.append(_entity(EntityRef(REPOSITORY, repo.name), attrs, [EntityRef(ENVIRONMENT, repo.environment)]))
    for account in config.aws.accounts:
        attrs = {"account_id": account.id, "alias": account.alias}
        entities.append(
            _entity(EntityRef(AWS_ACCOUNT, account.id), attrs, [EntityRef(ENVIRONMENT, account.environment)])
        )
    return entities


def principal_entities(principal: Principal, known_teams: set[str]) -> list[dict[str, Any]]:
    """The agent and the user it acts for, each a member of the agent's team."""
    team = EntityRef(TEAM, principal.team)
    entities = [] if principal.team in known_teams else [_entity(team)]
    entities.append(_entity(EntityRef(AGENT, principal.agent), parents=[team]))
    entities.append(_entity(EntityRef(USER, principal.on_behalf_of), parents=[team]))
    return entities
