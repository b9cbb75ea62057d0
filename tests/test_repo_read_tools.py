"""Read tools on real git repositories: each one's happy path, and what they refuse."""

from __future__ import annotations

import base64
import os

import pytest
from tests.conftest import audit_events
from tests.repo_support import COMMITTER, Session, client_for

from cedargate.errors import ToolInputError
from cedargate.git import git_text, run_git
from cedargate.repo_paths import safe_revision
from cedargate.runtime import Runtime

pytestmark = pytest.mark.anyio

WEB = {"repository": "acme/web"}


def _commit_symlink(runtime: Runtime, name: str, target: str) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    os.symlink(target, repo.path / name)
    run_git(repo.path, ["add", "--", name])
    run_git(repo.path, ["commit", "-q", "-m", "Add a link"], env=COMMITTER)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_repo_list_names_every_configured_repository_without_arguments(runtime: Runtime, mode: str) -> None:
    async with client_for(runtime, mode) as client:
        listing = await Session(client).ok("repo_list", {})
    assert [(r["name"], r["environment"]) for r in listing["repositories"]] == [
        ("acme/web", "dev"),
        ("acme/payments", "prod"),
    ]
    assert "path" not in listing["repositories"][0]
    [event] = audit_events(runtime.config.audit.path)
    assert event["resource"] == {"type": "Repository", "id": "acme/web"}


async def test_repo_list_tree_lists_root_and_a_folder_recursively(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        root = await s.ok("repo_list_tree", WEB)
        src = await s.ok("repo_list_tree", {**WEB, "path": "src", "recursive": True})
    assert {(e["path"], e["type"]) for e in root["entries"]} == {("README.md", "blob"), ("src", "tree")}
    assert [(e["path"], e["size"]) for e in src["entries"]] == [("src/app.py", 20)]


async def test_repo_search_finds_lines_with_path_and_number(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        found = await s.ok("repo_search", {**WEB, "pattern": "TIMEOUT_[A-Z]+"})
        none = await s.ok("repo_search", {**WEB, "pattern": "no such text", "fixed_string": True})
        dash = await s.ok("repo_search", {**WEB, "pattern": "--version", "fixed_string": True})
    assert found["matches"] == [{"path": "src/app.py", "line": 1, "text": "TIMEOUT_SECONDS = 5"}]
    assert none["matches"] == [] and dash["matches"] == []


async def test_repo_log_and_show_commit_describe_history_with_audit_trailers(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        written = await s.ok(
            "repo_write_file", {**WEB, "branch": "agent/log", "path": "NOTES.md", "content": "n\n", "message": "Notes"}
        )
        log = await s.ok("repo_log", {**WEB, "ref": "agent/log"})
        plain = await s.ok("repo_log", WEB)
        shown = await s.ok("repo_show_commit", {**WEB, "commit": written["commit"]})
    write_event = audit_events(runtime.config.audit.path)[0]["event_id"]
    assert [c["subject"] for c in log["commits"]] == ["Notes", "Initial commit"]
    assert log["commits"][0]["audit_events"] == [write_event]
    assert log["commits"][1]["audit_events"] == []
    assert [c["subject"] for c in plain["commits"]] == ["Initial commit"]
    assert shown["files"] == [{"path": "NOTES.md", "added": 1, "deleted": 0}]
    assert f"Cedargate-Audit-Event: {write_event}" in shown["message"]
    assert "+n" in shown["patch"]


async def test_repo_diff_compares_two_revisions(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_write_file", {**WEB, "branch": "agent/d", "path": "src/app.py", "content": "TIMEOUT = 9\n"})
        changed = await s.ok("repo_diff", {**WEB, "base": "main", "head": "agent/d"})
        nothing = await s.ok("repo_diff", WEB)
    assert changed["files"] == [{"path": "src/app.py", "added": 1, "deleted": 1}]
    assert "-TIMEOUT_SECONDS = 5\n+TIMEOUT = 9" in changed["patch"]
    assert nothing["files"] == [] and nothing["workspace"] is None


async def test_repo_status_reports_head_and_task_branches(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_write_file", {**WEB, "branch": "agent/s", "path": "a.txt", "content": "a"})
        status = await s.ok("repo_status", WEB)
    assert status["head"]["branch"] == "main"
    assert status["task_branches"] == ["agent/s"]
    assert status["workspace"] is None
    assert status["repository"]["protected_branches"] == ["main"]


async def test_repo_status_on_a_detached_head_names_no_branch_and_lists_only_task_branches(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    path = repo.path
    run_git(path, ["branch", "feature/x"])
    run_git(path, ["branch", "agent/t"])
    run_git(path, ["checkout", "-q", "--detach", "HEAD"])
    async with client_for(runtime) as client:
        status = await Session(client).ok("repo_status", WEB)
    assert status["head"] == {"branch": None, "commit": git_text(path, ["rev-parse", "HEAD"])}
    assert status["task_branches"] == ["agent/t"]


async def test_a_file_that_is_not_utf8_is_given_as_base64_so_writing_it_back_keeps_its_bytes(
    runtime: Runtime,
) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    latin1 = "caf\u00e9 cr\u00e8me\n".encode("latin-1")
    (repo.path / "menu.txt").write_bytes(latin1)
    (repo.path / "keys.txt").write_bytes(b"caf\xe9\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    run_git(repo.path, ["add", "menu.txt", "keys.txt"])
    run_git(repo.path, ["commit", "-q", "-m", "Add a Latin-1 menu"], env=COMMITTER)
    async with client_for(runtime) as client:
        s = Session(client)
        text = await s.ok("repo_read_file", {**WEB, "path": "README.md"})
        menu = await s.ok("repo_read_file", {**WEB, "path": "menu.txt"})
        keys = await s.ok("repo_read_file", {**WEB, "path": "keys.txt"})
    assert text["encoding"] == "utf-8" and text["content"].startswith("#")
    assert menu["encoding"] == "base64" and base64.b64decode(menu["content"]) == latin1
    # Secret shapes hidden by base64 would pass redaction: such bytes come back as redacted text.
    assert (
        keys["encoding"] == "latin-1"
        and keys["content"].startswith("caf\u00e9\n")
        and "wJalrXUtnFEMI" not in keys["content"]
    )


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("repo_read_file", {"path": "../../etc/passwd"}, "path"),
        ("repo_read_file", {"path": "/etc/passwd"}, "path"),
        ("repo_read_file", {"path": ".git/config"}, "path"),
        ("repo_list_tree", {"path": "src/../.."}, "path"),
        ("repo_search", {"pattern": "x", "path": "../web"}, "path"),
        ("repo_log", {"ref": "--output=/tmp/x"}, "ref"),
        ("repo_log", {"path": "--output=/tmp/x"}, "path"),
        ("repo_diff", {"base": "-p"}, "base"),
        ("repo_show_commit", {"commit": "--all"}, "commit"),
    ],
)
async def test_traversal_and_option_injection_are_refused_naming_the_field(
    runtime: Runtime, tool: str, arguments: dict[str, str], field: str
) -> None:
    async with client_for(runtime) as client:
        message = await Session(client).refused(tool, {**WEB, **arguments})
    assert f"field `{field}`" in message
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "invalid_arguments"


async def test_reads_through_a_committed_symlink_are_refused(runtime: Runtime) -> None:
    _commit_symlink(runtime, "escape", "/etc")
    async with client_for(runtime) as client:
        s = Session(client)
        message = await s.refused("repo_read_file", {**WEB, "path": "escape/passwd"})
        tree = await s.ok("repo_list_tree", WEB)
    assert "`escape` is a symbolic link" in message
    assert {"path": "escape", "type": "symlink", "mode": "120000", "size": 4} in tree["entries"]


async def test_reading_a_path_that_is_itself_a_link_is_refused_naming_its_target(runtime: Runtime) -> None:
    """A link is not read as a file (its blob is the target's name): the agent is told where it points."""
    _commit_symlink(runtime, "passwd", "/etc/passwd")
    _commit_symlink(runtime, "docs-readme", "README.md")
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    (repo.path / "docs").mkdir(exist_ok=True)
    _commit_symlink(runtime, "docs/up", "../README.md")
    async with client_for(runtime) as client:
        s = Session(client)
        outside = await s.refused("repo_read_file", {**WEB, "path": "passwd"})
        inside = await s.refused("repo_read_file", {**WEB, "path": "docs-readme"})
        nested = await s.refused("repo_read_file", {**WEB, "path": "docs/up"})
        readme = await s.ok("repo_read_file", {**WEB, "path": "README.md"})
    assert "`passwd` is a symbolic link (to `/etc/passwd`)" in outside
    assert "`docs-readme` is a symbolic link (to `README.md`)" in inside
    assert "`docs/up` is a symbolic link (to `../README.md`)" in nested
    assert readme["content"].startswith("# acme/web")
    outcomes = [e["outcome"] for e in audit_events(runtime.config.audit.path)]
    assert outcomes == ["invalid_arguments", "invalid_arguments", "invalid_arguments", "succeeded"]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("repo_list_tree", {"path": "etc_dir"}),
        ("repo_list_tree", {"path": "etc_dir", "recursive": True}),
        ("repo_search", {"pattern": "root", "path": "etc_dir"}),
        ("repo_search", {"pattern": "root", "path": "etc_dir/passwd"}),
    ],
)
async def test_listing_or_searching_a_committed_link_is_refused_not_shown_empty(
    runtime: Runtime, tool: str, arguments: dict[str, object]
) -> None:
    """An empty answer would look like an empty folder; the agent is told the path is a link instead."""
    _commit_symlink(runtime, "etc_dir", "/etc")
    async with client_for(runtime) as client:
        message = await Session(client).refused(tool, {**WEB, **arguments})
    assert "field `path`: `etc_dir` is a symbolic link" in message
    assert "tools do not follow links" in message
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "invalid_arguments"


async def test_a_link_to_a_directory_inside_the_repository_is_not_followed_either(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    (repo.path / "docs").mkdir(exist_ok=True)
    (repo.path / "docs" / "guide.md").write_text("guide\n")
    run_git(repo.path, ["add", "--", "docs/guide.md"])
    _commit_symlink(runtime, "alias", "docs")
    async with client_for(runtime) as client:
        s = Session(client)
        direct = await s.ok("repo_read_file", {**WEB, "path": "docs/guide.md"})
        message = await s.refused("repo_read_file", {**WEB, "path": "alias/guide.md"})
    assert direct["content"] == "guide\n"
    assert "`alias` is a symbolic link" in message


async def test_a_file_read_names_what_is_wrong_with_the_ref_or_the_path(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    before = git_text(repo.path, ["rev-parse", "HEAD"])
    (repo.path / "docs" / "deep").mkdir(parents=True)
    (repo.path / "docs" / "deep" / "note.md").write_text("deep\n")
    run_git(repo.path, ["add", "docs"])
    run_git(repo.path, ["commit", "-q", "-m", "Add a nested file"], env=COMMITTER)
    async with client_for(runtime) as client:
        s = Session(client)
        nested = await s.ok("repo_read_file", {**WEB, "path": "docs/deep/note.md"})
        older = await s.refused("repo_read_file", {**WEB, "path": "docs/deep/note.md", "ref": before})
        missing_ref = await s.refused("repo_read_file", {**WEB, "path": "README.md", "ref": "no-such-branch"})
        directory = await s.refused("repo_read_file", {**WEB, "path": "docs/deep"})
        line_break = await s.refused("repo_read_file", {**WEB, "path": "a\nb"})
    assert nested["content"] == "deep\n" and nested["size"] == 5
    assert nested["commit"] == git_text(repo.path, ["rev-parse", "HEAD"])
    assert f"field `path`: `docs/deep/note.md` is not a file at `{before}`" in older
    assert "field `ref`: `no-such-branch` is not a commit" in missing_ref
    assert "field `path`: `docs/deep` is not a file" in directory
    assert "field `path`" in line_break and "line break" in line_break


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("repo_read_file", {"path": "README.md", "ref": "nonexistent-branch"}, "ref"),
        ("repo_list_tree", {"ref": "nonexistent-branch"}, "ref"),
        ("repo_log", {"ref": "nonexistent-branch"}, "ref"),
        ("repo_show_commit", {"commit": "nonexistent-branch"}, "commit"),
        ("repo_diff", {"base": "nonexistent-branch", "head": "HEAD"}, "base"),
    ],
)
async def test_a_ref_that_is_not_a_commit_is_reported_in_the_configured_repository(
    runtime: Runtime, tool: str, arguments: dict[str, str], field: str
) -> None:
    """The agent knows the repository as `acme/web`; the folder it is checked out in is the server's business."""
    async with client_for(runtime) as client:
        message = await Session(client).refused(tool, {**WEB, **arguments})
    assert f"field `{field}`: `nonexistent-branch` is not a commit in `acme/web`" in message


async def test_reads_of_the_prod_repository_are_allowed_and_scoped_to_it(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        log = await Session(client).ok("repo_log", {"repository": "acme/payments"})
    repo = runtime.config.repository("acme/payments")
    assert repo is not None and repo.path is not None
    assert log["commits"][0]["commit"] == git_text(repo.path, ["rev-parse", "HEAD"])


async def test_pathspec_magic_in_a_path_is_taken_literally(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        found = await Session(client).ok("repo_search", {**WEB, "pattern": "acme", "path": ":(glob)**"})
    assert found["matches"] == []


@pytest.mark.parametrize("revision", ["HEAD~1", "main^", "main^2~3", "HEAD~", "v1.0~2"])
def test_a_revision_may_name_an_ancestor(revision: str) -> None:
    assert safe_revision(revision, "ref") == revision


@pytest.mark.parametrize(
    "revision", ["HEAD^{tree}", "main..HEAD~1", "~1", "-x~1", "HEAD~1 ", "@{-1}", "HEAD:README.md"]
)
def test_a_revision_with_anything_but_ancestry_steps_is_refused(revision: str) -> None:
    with pytest.raises(ToolInputError, match="field `ref`"):
        safe_revision(revision, "ref")


async def test_reads_and_diffs_may_name_an_ancestor_of_a_ref(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    (repo.path / "CHANGES.md").write_text("one\n")
    run_git(repo.path, ["add", "CHANGES.md"])
    run_git(repo.path, ["commit", "-q", "-m", "Add changes"], env=COMMITTER)
    async with client_for(runtime) as client:
        s = Session(client)
        before = await s.ok("repo_read_file", {**WEB, "path": "README.md", "ref": "HEAD~1"})
        diff = await s.ok("repo_diff", {**WEB, "base": "HEAD~1", "head": "HEAD"})
    assert before["commit"] == git_text(repo.path, ["rev-parse", "HEAD~1"])
    assert [f["path"] for f in diff["files"]] == ["CHANGES.md"]
