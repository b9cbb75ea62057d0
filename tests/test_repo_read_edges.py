"""Read tools on what agents and admins can put in a repository: odd file names, odd messages, huge commits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.repo_support import COMMITTER, Session, client_for

from cedargate.git import run_git
from cedargate.handlers import repo_read
from cedargate.runtime import Runtime

pytestmark = pytest.mark.anyio

WEB = {"repository": "acme/web"}


def _web(runtime: Runtime) -> Path:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    return repo.path


def _commit_files(repo: Path, files: dict[bytes, bytes], message: str = "Add files", **env: str) -> None:
    """Commit files named by raw bytes (names need not be UTF-8) onto the checked-out branch."""
    for name, content in files.items():
        full = os.path.join(os.fsencode(repo), name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(content)
    run_git(repo, ["add", "-A"])
    run_git(repo, ["commit", "-q", "-F", "-"], input=message.encode(), env={**COMMITTER, **env})


@pytest.mark.parametrize("name", ["notes\rold.txt", "two\nlines.txt", "a\u2028b.md", "x\u0085y.md", "docs/\n"])
async def test_search_finds_a_match_in_a_file_whose_name_holds_a_line_break(runtime: Runtime, name: str) -> None:
    """git grep's names may hold any byte but NUL: splitting its output into lines cut them apart."""
    _commit_files(_web(runtime), {name.encode(): b"needle here\n", b"plain.txt": b"a needle\n"})
    async with client_for(runtime) as client:
        found = await Session(client).ok("repo_search", {**WEB, "pattern": "needle"})
    assert sorted((m["path"], m["line"], m["text"]) for m in found["matches"]) == sorted(
        [(name, 1, "needle here"), ("plain.txt", 1, "a needle")]
    )


async def test_search_shows_the_text_of_a_match_in_a_file_whose_name_is_not_utf8(runtime: Runtime) -> None:
    _commit_files(_web(runtime), {b"caf\xe9.txt": b"needle here\n"})
    async with client_for(runtime) as client:
        found = await Session(client).ok("repo_search", {**WEB, "pattern": "needle"})
    assert found["matches"] == [{"path": "caf\ufffd.txt", "line": 1, "text": "needle here"}]


async def test_a_search_pattern_with_a_line_break_is_refused_not_read_as_two_patterns(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        message = await Session(client).refused("repo_search", {**WEB, "pattern": "acme\nTIMEOUT"})
    assert "field `pattern`" in message and "line break" in message


@pytest.mark.parametrize("subject", ["Fix\x1fthing", "Fix\u2028thing", "Fix\x1e\x1fthing\x1f"])
async def test_log_and_show_commit_read_messages_and_names_holding_separators(runtime: Runtime, subject: str) -> None:
    """Messages and names are free text: a field separator inside one must not split (or crash) the answer."""
    _commit_files(_web(runtime), {b"a.txt": b"a\n"}, f"{subject}\n\nBody\x1fline\n", GIT_AUTHOR_NAME="Ann\x1fB")
    async with client_for(runtime) as client:
        s = Session(client)
        log = await s.ok("repo_log", WEB)
        shown = await s.ok("repo_show_commit", {**WEB, "commit": "HEAD"})
    assert [c["subject"] for c in log["commits"]] == [subject, "Initial commit"]
    assert log["commits"][0]["author"] == "Ann\x1fB"
    assert shown["message"] == f"{subject}\n\nBody\x1fline"
    assert shown["author"]["name"] == "Ann\x1fB" and shown["committer"]["name"] == "t"
    assert shown["files"] == [{"path": "a.txt", "added": 1, "deleted": 0}]


async def test_show_commit_and_diff_cap_the_files_of_a_huge_commit_and_say_so(runtime: Runtime) -> None:
    """A commit touching thousands of files, with a long message, is still readable: capped, never withheld."""
    repo = _web(runtime)
    count = repo_read.MAX_FILES + 500
    message = "Vendor fixtures\n\n" + "lorem ipsum " * (repo_read.MAX_MESSAGE_CHARS // 4)
    _commit_files(repo, {f"gen/f{i:05d}.json".encode(): b"{}\n" for i in range(count)}, message)
    async with client_for(runtime) as client:
        s = Session(client)
        shown = await s.ok("repo_show_commit", {**WEB, "commit": "HEAD"})
        diff = await s.ok("repo_diff", {**WEB, "base": "HEAD~1", "head": "HEAD"})
    for result in (shown, diff):
        assert len(result["files"]) == repo_read.MAX_FILES and result["files_truncated"] is True
        assert result["files_count"] == count
        assert result["files"][0] == {"path": "gen/f00000.json", "added": 1, "deleted": 0}
    assert shown["message_truncated"] is True and len(shown["message"]) == repo_read.MAX_MESSAGE_CHARS
    assert shown["message"].startswith("Vendor fixtures\n\nlorem ipsum")


async def test_long_file_names_cannot_push_a_commit_over_the_result_cap(runtime: Runtime) -> None:
    repo = _web(runtime)
    folder = "/".join(["d" * 200] * 4)  # 800 characters of folders before each name
    _commit_files(repo, {f"{folder}/f{i:04d}".encode(): b"x\n" for i in range(500)})
    async with client_for(runtime) as client:
        shown = await Session(client).ok("repo_show_commit", {**WEB, "commit": "HEAD"})
    assert shown["files_count"] == 500 and shown["files_truncated"] is True
    assert 0 < len(shown["files"]) < 500
    assert len(json.dumps(shown["files"])) <= repo_read.MAX_FILES_JSON_CHARS


async def test_a_small_commit_is_shown_whole_with_its_counts(runtime: Runtime) -> None:
    _commit_files(_web(runtime), {b"a.txt": b"a\n"}, "Small")
    async with client_for(runtime) as client:
        shown = await Session(client).ok("repo_show_commit", {**WEB, "commit": "HEAD"})
    assert (shown["files_count"], shown["files_truncated"], shown["message_truncated"]) == (1, False, False)
    assert shown["message"] == "Small"


@pytest.mark.parametrize(
    ("path", "problem"),
    [("README.md", "`README.md` is a file, not a folder"), ("no/such/dir", "`no/such/dir` does not exist")],
)
async def test_listing_a_file_or_a_missing_folder_is_refused_not_shown_empty(
    runtime: Runtime, path: str, problem: str
) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        message = await s.refused("repo_list_tree", {**WEB, "path": path})
        src = await s.ok("repo_list_tree", {**WEB, "path": "src"})
    assert f"field `path`: {problem}" in message
    assert [e["path"] for e in src["entries"]] == ["src/app.py"]


async def test_a_commit_names_its_files_as_they_are_not_c_quoted(runtime: Runtime) -> None:
    branch = {**WEB, "branch": "agent/uni"}
    patch = '--- /dev/null\n+++ "b/docs/caf\\303\\251 menu.md"\n@@ -0,0 +1 @@\n+hi\n'
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_create_branch", branch)
        await s.ok("repo_apply_diff", {**branch, "patch": patch})
        committed = await s.ok("repo_commit", {**branch, "message": "Add the menu"})
    assert committed["files"] == ["docs/café menu.md"]
