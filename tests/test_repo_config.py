"""Repository configuration: a clone URL instead of a local path, and what an incomplete entry says."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.repo_support import Session, client_for, read_and_close

from cedargate import checkout
from cedargate.config import RepositoryConfig, load_config
from cedargate.errors import ConfigError, HandlerError
from cedargate.git import run_git
from cedargate.runtime import Runtime, build_runtime

COMMITTER = {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@localhost", "GIT_COMMITTER_NAME": "u",
             "GIT_COMMITTER_EMAIL": "u@localhost"}  # fmt: skip


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


def _cloned_web(tree: Path, refresh: str) -> Runtime:
    """`acme/web` given only by `clone_url` (the demo repository stands in for the forge's)."""
    config_path = tree / "cedargate.toml"
    source = f'clone_url = "{tree / "repos/web"}"\n{refresh}'
    config_path.write_text(config_path.read_text().replace('path = "repos/web"', source, 1))
    return build_runtime(load_config(config_path, environ={}))


def _merge_upstream(tree: Path, name: str, text: str) -> None:
    upstream = tree / "repos/web"
    (upstream / name).write_text(text)
    run_git(upstream, ["add", "--", name])
    run_git(upstream, ["commit", "-q", "-m", f"Add {name}"], env=COMMITTER)


@pytest.mark.anyio
async def test_a_clone_is_fetched_again_so_reads_see_what_was_merged_upstream(tree: Path) -> None:
    runtime = _cloned_web(tree, "refresh_seconds = 0")
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_read_file", {"repository": "acme/web", "path": "README.md"})
            branch = await s.ok("repo_create_branch", {"repository": "acme/web", "branch": "agent/keep"})
            _merge_upstream(tree, "MERGED.md", "merged upstream\n")
            heard: list[str | None] = []

            async def report(done: float, total: float | None, message: str | None) -> None:
                heard.append(message)

            read = await client.call_tool(
                "repo_read_file", {"repository": "acme/web", "path": "MERGED.md"}, progress_callback=report
            )
            merged = dict(read.structured_content or {})
            status = await s.ok("repo_status", {"repository": "acme/web"})
    finally:
        runtime.close()
    assert merged["content"] == "merged upstream\n"
    assert heard == ["fetching `acme/web` from its clone_url"]
    assert merged["commit"] == run_git(tree / "repos/web", ["rev-parse", "HEAD"]).stdout.decode().strip()
    assert branch["branch"] in status["task_branches"]  # task branches are local: a refresh leaves them


@pytest.mark.anyio
async def test_a_clone_is_not_fetched_again_before_its_refresh_interval(tree: Path) -> None:
    runtime = _cloned_web(tree, "refresh_seconds = 3600")
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_read_file", {"repository": "acme/web", "path": "README.md"})
            _merge_upstream(tree, "LATER.md", "later\n")
            message = await s.refused("repo_read_file", {"repository": "acme/web", "path": "LATER.md"})
    finally:
        runtime.close()
    assert "`LATER.md` is not a file" in message


@pytest.mark.anyio
async def test_an_unreachable_upstream_leaves_reads_working_on_the_clone_and_says_so_in_the_log(
    tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = _cloned_web(tree, "refresh_seconds = 0")
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_read_file", {"repository": "acme/web", "path": "README.md"})
            (tree / "repos/web").rename(tree / "repos/web-moved")
            with caplog.at_level(logging.WARNING, logger="cedargate.checkout"):
                again = await s.ok("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    finally:
        runtime.close()
    assert again["content"].startswith("# acme/web")
    assert any("could not be refreshed" in r.getMessage() and "acme/web" in r.getMessage() for r in caplog.records)


def test_a_slow_clone_delays_only_its_own_repository(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`acme/slow` is still cloning when `acme/fast` is first used: the second clone does not wait for it."""
    upstream = str(tree / "repos/web")
    slow, fast = (
        RepositoryConfig(name=f"acme/{n}", clone_url=upstream, path=tree / f"var/repos/acme/{n}", environment="dev",
                         owner_team="platform")
        for n in ("slow", "fast")
    )  # fmt: skip
    slow_began, fast_cloned = threading.Event(), threading.Event()
    slow_waited_for: list[bool] = []

    def git(repo: Path, args: Sequence[str], **kwargs: Any) -> Any:
        if args[0] == "clone" and _clones_into(args, slow):
            slow_began.set()
            slow_waited_for.append(fast_cloned.wait(timeout=10))  # the forge answers acme/slow late
        done = run_git(repo, args, **kwargs)
        if args[0] == "clone" and _clones_into(args, fast):
            fast_cloned.set()
        return done

    monkeypatch.setattr(checkout, "run_git", git)
    slow_clone = threading.Thread(target=checkout.local_repo, args=(slow,))
    slow_clone.start()
    assert slow_began.wait(timeout=10)  # acme/slow's clone has begun, and holds whatever lock it takes
    assert checkout.local_repo(fast) == fast.path
    slow_clone.join(timeout=20)
    assert slow_waited_for == [True]  # acme/fast was cloned while acme/slow's clone was still waiting
    assert (slow.path / "README.md").is_file() and (fast.path / "README.md").is_file()


def _clones_into(args: Sequence[str], repo: RepositoryConfig) -> bool:
    """Whether a `git clone` command is the one for ``repo`` (it clones beside the path, then renames)."""
    assert repo.path is not None
    return Path(args[-1]).parent == repo.path.parent and Path(args[-1]).name.startswith(f".{repo.path.name}.clone-")


def _web_by_url(tree: Path) -> RepositoryConfig:
    return RepositoryConfig(name="acme/web", clone_url=str(tree / "repos/web"), path=tree / "var/repos/acme/web",
                            environment="dev", owner_team="storefront")  # fmt: skip


def test_a_clone_cut_short_is_never_read_and_the_next_use_clones_again(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = _web_by_url(tree)

    def dies_mid_clone(repo: Path, args: Sequence[str], **kwargs: Any) -> Any:
        if args[0] == "clone":
            (Path(args[-1]) / ".git").mkdir()  # what a clone leaves when its server is stopped
            raise HandlerError("git clone: interrupted")
        return run_git(repo, args, **kwargs)

    monkeypatch.setattr(checkout, "run_git", dies_mid_clone)
    with pytest.raises(HandlerError, match="interrupted"):
        checkout.local_repo(web)
    assert web.path is not None and not web.path.exists()
    assert list(web.path.parent.iterdir()) == []  # the partial copy is gone too
    monkeypatch.setattr(checkout, "run_git", run_git)
    assert (checkout.local_repo(web) / "README.md").is_file()


def test_a_clone_another_server_finished_first_is_the_one_used(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = _web_by_url(tree)
    assert web.path is not None

    def races(repo: Path, args: Sequence[str], **kwargs: Any) -> Any:
        done = run_git(repo, args, **kwargs)
        if args[0] == "clone":  # meanwhile the other server renamed its own clone into place
            run_git(repo, ["clone", "--quiet", "--", str(tree / "repos/web"), str(web.path)])
            (web.path / "theirs").write_text("the other server's clone\n")
        return done

    monkeypatch.setattr(checkout, "run_git", races)
    assert checkout.local_repo(web) == web.path
    assert (web.path / "theirs").is_file()
    assert sorted(p.name for p in web.path.parent.iterdir()) == ["web"]  # this server's copy was dropped
