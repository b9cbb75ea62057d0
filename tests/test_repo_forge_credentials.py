"""Cloning from and pushing to the forge over HTTP: the forge token is git's credential, for its own host only."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.repo_support import (
    ForgeStandIn,
    GitHttpStandIn,
    Session,
    bare_remote,
    client_for,
    configure_web,
    forge_stand_in,
    git_http_stand_in,
    read_and_close,
)

from cedargate.git import git_text, run_git

pytestmark = pytest.mark.anyio

TOKEN_ENV = "CEDARGATE_TEST_FORGE_TOKEN"
TOKEN = "stand-in-token-0123456789"
EXPECTED = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
BRANCH = {"repository": "acme/web", "branch": "agent/pushed"}


@pytest.fixture
def forge() -> Iterator[ForgeStandIn]:
    with forge_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[GitHttpStandIn]:
    bare_remote(tmp_path / "served" / "web.git")
    with git_http_stand_in(tmp_path / "served", EXPECTED) as stand_in:
        yield stand_in


async def _push(tree: Path, forge: ForgeStandIn, remote: str) -> tuple[bool, object]:
    runtime = configure_web(
        tree,
        f"""remote = "{remote}"

[repositories.forge]
kind = "github"
api_url = "{forge.url}"
token_env = "{TOKEN_ENV}"
""",
    )
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_create_branch", BRANCH)
            await s.ok("repo_write_file", {**BRANCH, "path": "notes.md", "content": "pushed\n"})
            return await s.call("repo_push", BRANCH)
    finally:
        runtime.close()


async def test_a_push_to_the_forge_host_carries_the_forge_token_and_nothing_records_it(
    tree: Path, forge: ForgeStandIn, git_http: GitHttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    ok, pushed = await _push(tree, forge, git_http.url("web.git"))
    assert ok, pushed
    assert isinstance(pushed, dict)
    remote_tip = git_text(git_http.root / "web.git", ["rev-parse", "refs/heads/agent/pushed"])
    assert remote_tip == pushed["commit"]
    assert EXPECTED in git_http.seen
    assert TOKEN not in (tree / "audit.jsonl").read_text()


async def test_without_the_token_nothing_is_pushed_and_the_variable_is_named(
    tree: Path, forge: ForgeStandIn, git_http: GitHttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    ok, message = await _push(tree, forge, git_http.url("web.git"))
    assert not ok
    assert f"`{TOKEN_ENV}` (its forge token) is not set" in str(message)
    assert git_http.seen == []


async def test_a_remote_on_another_host_is_never_sent_the_token(
    tree: Path, forge: ForgeStandIn, git_http: GitHttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    other_host = git_http.url("web.git").replace("127.0.0.1", "localhost")  # same machine, another name
    ok, message = await _push(tree, forge, other_host)
    assert not ok
    assert "git push failed" in str(message)
    assert git_http.seen and set(git_http.seen) == {""}


async def test_a_clone_url_on_the_forge_host_is_cloned_with_the_token_which_the_clone_does_not_keep(
    tree: Path, forge: ForgeStandIn, git_http: GitHttpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    run_git(tree, ["clone", "--quiet", "--bare", "--", str(tree / "repos/web"), str(git_http.root / "private.git")])
    config_path = tree / "cedargate.toml"
    url = git_http.url("private.git")
    config_path.write_text(config_path.read_text().replace('path = "repos/web"', f'clone_url = "{url}"', 1))
    runtime = configure_web(
        tree, f'[repositories.forge]\nkind = "github"\napi_url = "{forge.url}"\ntoken_env = "{TOKEN_ENV}"\n'
    )
    read = await read_and_close(runtime, "README.md")
    assert read["content"].startswith("# acme/web")
    assert EXPECTED in git_http.seen
    clone = tree / "var/repos/acme/web"
    assert TOKEN not in (clone / ".git" / "config").read_text()
    assert base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode() not in (clone / ".git" / "config").read_text()
