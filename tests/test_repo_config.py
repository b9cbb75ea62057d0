"""Repository configuration: a clone URL instead of a local path, and what an incomplete entry says."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.repo_support import read_and_close

from cedargate.config import load_config
from cedargate.errors import ConfigError
from cedargate.runtime import build_runtime


@pytest.mark.anyio
async def test_a_repository_given_only_by_clone_url_is_cloned_on_first_use(tree: Path) -> None:
    config_path = tree / "cedargate.toml"
    config_path.write_text(
        config_path.read_text().replace('path = "repos/web"', f'clone_url = "{tree / "repos/web"}"', 1)
    )
    config = load_config(config_path, environ={})
    web = config.repository("acme/web")
    assert web is not None and web.path == tree / "var/repos/acme/web"
    heard: list[str] = []
    read = await read_and_close(build_runtime(config), "README.md", heard)
    assert read["content"].startswith("# acme/web")
    assert (tree / "var/repos/acme/web/.git").is_dir()
    assert heard == ["cloning `acme/web` on its first use"]


def test_a_repository_without_path_or_clone_url_is_a_config_error(tree: Path) -> None:
    config_path = tree / "cedargate.toml"
    config_path.write_text(config_path.read_text().replace('path = "repos/web"\n', "", 1))
    with pytest.raises(ConfigError, match=r"needs `path` .* or `clone_url`"):
        load_config(config_path, environ={})
