"""Git failures tell the agent why: git's marked cause lines, not its closing hint; a lost compare-and-swap reads so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.repo_support import Session, bare_remote, client_for, with_remote

from cedargate.errors import HandlerError
from cedargate.git import run_git

pytestmark = pytest.mark.anyio

IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
BRANCH = {"repository": "acme/web", "branch": "agent/timeout"}


def _repo(path: Path) -> tuple[Path, str]:
    """A repository with one commit; its path and that commit."""
    run_git(path.parent, ["init", "-q", "-b", "main", str(path)])
    run_git(path, [*IDENTITY, "commit", "-q", "--allow-empty", "-m", f"first in {path.name}"])
    return path, run_git(path, ["rev-parse", "HEAD"]).stdout.decode().strip()


def _failure(repo: Path, args: list[str]) -> str:
    with pytest.raises(HandlerError) as caught:
        run_git(repo, args)
    return str(caught.value)


def test_a_lost_compare_and_swap_says_the_branch_moved_and_to_retry(tmp_path: Path) -> None:
    repo, commit = _repo(tmp_path / "r")
    run_git(repo, ["update-ref", "refs/heads/agent/x", commit])
    created = _failure(repo, ["update-ref", "refs/heads/agent/x", commit, "0" * 40])  # "reference already exists"
    moved = _failure(repo, ["update-ref", "refs/heads/agent/x", commit, "1" * 40])  # "is at … but expected …"
    deleted = _failure(repo, ["update-ref", "-d", "refs/heads/agent/gone", commit])  # "unable to resolve"
    for message in (created, moved, deleted):
        assert message.startswith("git update-ref failed in `r`: branch `agent/")
        assert "moved concurrently" in message and "retry the call" in message
        assert "cannot lock ref" not in message and str(tmp_path) not in message


def test_the_lost_compare_and_swap_is_a_handler_error_callers_can_recognise(tmp_path: Path) -> None:
    from cedargate.git import RefMovedError

    repo, commit = _repo(tmp_path / "r")
    with pytest.raises(RefMovedError) as caught:
        run_git(repo, ["update-ref", "refs/heads/main", commit, "0" * 40])
    assert isinstance(caught.value, HandlerError)
    assert (caught.value.ref, caught.value.branch) == ("refs/heads/main", "main")


def test_an_update_ref_failing_otherwise_keeps_gits_cause(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "r")
    message = _failure(repo, ["update-ref", "refs/heads/agent/x", "f" * 40])
    assert "moved concurrently" not in message and "f" * 40 in message


def test_a_rejected_push_names_the_branch_and_the_cause_not_a_hint(tmp_path: Path) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    ours, _ = _repo(tmp_path / "ours")
    theirs, _ = _repo(tmp_path / "theirs")
    run_git(theirs, ["push", "-q", str(remote), "HEAD:refs/heads/agent/x"])
    message = _failure(ours, ["push", "--quiet", "--porcelain", str(remote), "HEAD:refs/heads/agent/x"])
    assert "the remote refused `agent/x`: [rejected] (fetch first)" in message
    assert "pushes only fast-forwards" in message and "failed to push some refs to <server path>" in message
    assert "hint" not in message and str(tmp_path) not in message


def test_an_unreachable_remote_says_so(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "r")
    message = _failure(repo, ["push", "--quiet", "--porcelain", str(tmp_path / "missing.git"), "HEAD:refs/heads/x"])
    assert message == (
        "git push failed in `r`: <server path> does not appear to be a git repository; "
        "Could not read from remote repository."
    )


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        ("warning: w\nerror: first\nhint: do this\nfatal: second\nhint: and that\n", "first; second"),
        (
            "remote: \nremote: error: GH006: Protected branch update failed\nerror: failed to push\n",
            "remote: error: GH006: Protected branch update failed; failed to push",
        ),
        ("something went wrong\nin two lines\nhint: advice\n", "something went wrong; in two lines"),
        ("hint: only advice\n", "hint: only advice"),
        ("", "no message"),
        ("fatal: same\nfatal: same\n", "same"),
    ],
)
def test_the_message_is_built_from_the_cause_lines(stderr: str, said: str) -> None:
    from cedargate.git import git_failure

    assert git_failure(stderr) == said


def test_the_message_is_bounded_after_server_paths_are_hidden() -> None:
    from cedargate.git import git_failure

    said = git_failure("".join(f"remote: line {n} at /srv/git/secret/place\n" for n in range(200)))
    assert len(said) <= 600 and said.endswith("…") and "/srv" not in said and "<server path>" in said


async def test_repo_push_over_a_moved_remote_branch_tells_the_agent_why(tree: Path) -> None:
    runtime, remote = with_remote(tree)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "1\n"})
            await s.ok("repo_push", BRANCH)
            other, _ = _repo(tree / "other")
            run_git(other, ["push", "-q", "--force", str(remote), "HEAD:refs/heads/agent/timeout"])
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "2\n"})
            pushed_over = await s.refused("repo_push", BRANCH)
            shutil.rmtree(remote)
            unreachable = await s.refused("repo_push", BRANCH)
    finally:
        runtime.close()
    assert "the remote refused `agent/timeout`: [rejected]" in pushed_over and "hint" not in pushed_over
    assert "Could not read from remote repository" in unreachable and "and the repository exists" not in unreachable
    assert str(tree) not in pushed_over + unreachable
