"""Repository lookups by name use an index that follows the config it belongs to; names are unique."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cedargate.config import Config, RepositoryConfig


def _repo(name: str, environment: str = "dev") -> RepositoryConfig:
    return RepositoryConfig(name=name, path=".", environment=environment, owner_team="t")  # type: ignore[arg-type]


def test_lookup_finds_a_repository_among_many() -> None:
    config = Config(repositories=(*(_repo(f"gen/repo-{i}") for i in range(2000)), _repo("gen/prod-5", "prod")))
    found = config.repository("gen/prod-5")
    assert found is not None and found.environment == "prod"
    assert config.repository("gen/missing") is None


def test_a_config_never_holds_two_repositories_of_one_name() -> None:
    with pytest.raises(ValidationError, match=r"`repositories.1.name`: `gen/repo-5` is already the name of"):
        Config(repositories=(_repo("gen/repo-5"), _repo("gen/repo-5", "prod")))


def test_a_copied_config_does_not_keep_the_index_of_the_original() -> None:
    config = Config(repositories=(_repo("acme/web"),))
    assert config.repository("acme/web") is not None
    copy = config.model_copy(update={"repositories": (_repo("acme/payments"),)})
    assert copy.repository("acme/web") is None
    assert copy.repository("acme/payments") is not None
    assert "repository_index" not in copy.model_dump()
