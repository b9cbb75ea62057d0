"""Path classes: policies see the paths a repository call changes (`context.changes`) and decide on them.

The diff reader is checked against diffs real git writes; the decisions go through a real MCP
client session on the demo tree, whose config puts `.github/workflows/` in the `ci` class and
whose shipped policy holds a change there for a maintainer.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import audit_events
from tests.governed_tree import cli_on, governed_config
from tests.repo_support import COMMITTER, WEB_ANCHOR, Session, client_for

from cedargate import pipeline
from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.change_paths import Changes, diff_paths, path_classes_of
from cedargate.cli import main as cli_main
from cedargate.config import StoreConfig, load_config
from cedargate.errors import CedargateError
from cedargate.git import git_text, run_git
from cedargate.path_classes import classify
from cedargate.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

WEB = {"repository": "acme/web", "branch": "agent/paths"}
CI_FILE = ".github/workflows/ci.yml"
CRLF_RENAME = (
    "diff --git a/src/app.py b/src/main.py\r\nsimilarity index 100%\r\n"
    "rename from src/app.py\r\nrename to src/main.py\r\n"
)
"""A rename as a Windows tool may write it."""


def _web_classes(tree: Path, classes: str) -> Path:
    """Give acme/web path classes of its own (``classes``: a TOML inline table); returns the config."""
    config = tree / "cedargate.toml"
    config.write_text(config.read_text().replace(WEB_ANCHOR, f"{WEB_ANCHOR}path_classes = {classes}\n", 1))
    return config


def _git_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    run_git(path, ["init", "-q", "-b", "main"])
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    run_git(path, ["add", "-A"])
    run_git(path, ["commit", "-q", "-m", "start"], env=COMMITTER)
    return path


def _staged_diff(repo: Path, *options: str) -> str:
    run_git(repo, ["add", "-A"])
    return git_text(repo, ["diff", "--cached", "-M", *options]) + "\n"


def test_the_diff_reader_names_every_path_of_diffs_git_writes(tmp_path: Path) -> None:
    repo = _git_repo(
        tmp_path / "r",
        {
            "src/app.py": "A = 1\n",
            "old name.txt": "a long enough text to be recognised as renamed\n" * 4,
            "gone.txt": "bye\n",
            "run.sh": "echo hi\n",
            "moved/orig.py": "x = 1\n" * 10,
        },
    )
    (repo / "src/app.py").write_text("A = 2\n")
    (repo / "old name.txt").rename(repo / "new name.txt")
    (repo / "gone.txt").unlink()
    os.chmod(repo / "run.sh", 0o755)
    (repo / "moved/orig.py").rename(repo / "moved/renamed.py")
    (repo / "café.txt").write_text("unicode name\n")
    (repo / "empty").write_text("")
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    patch = _staged_diff(repo, "--binary")

    assert diff_paths(patch) == {
        "src/app.py",
        "old name.txt",
        "new name.txt",
        "gone.txt",
        "run.sh",
        "moved/orig.py",
        "moved/renamed.py",
        "café.txt",
        "empty",
        "blob.bin",
    }
    # Whatever git itself reads from the diff, the reader named too.
    numstat = git_text(repo, ["apply", "--numstat", "-z", "--cached", "-R", "-"], input=patch.encode())
    named_by_git = {field.split("\t")[-1] for field in numstat.split("\0") if field.strip()}
    assert named_by_git - {""} <= diff_paths(patch)


def test_a_removed_line_that_looks_like_a_header_is_no_path() -> None:
    """A hunk removing `-- note` reads `--- note`; without a `+++` line after it, it names nothing."""
    patch = "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1 @@\n--- note\n SELECT 1;\n"
    assert diff_paths(patch) == {"q.sql"}


def test_prefixes_and_dev_null_are_read_as_git_apply_p1_does() -> None:
    patch = "--- /dev/null\n+++ b/new/file.txt\t\n@@ -0,0 +1 @@\n+x\n"
    assert diff_paths(patch) == {"new/file.txt"}
    quoted = 'diff --git "a/tab\\there" "b/tab\\there"\nnew file mode 100644\n'
    assert diff_paths(quoted) == {"tab\there"}


def test_classes_follow_gitignore_rules_and_a_repository_only_adds_to_a_class(tree: Path) -> None:
    text = (tree / "cedargate.toml").read_text()
    text = text.replace('ci = [".github/workflows/"]', 'ci = [".github/workflows/"]\ninfra = ["*.tf", "/deploy/"]')
    (tree / "cedargate.toml").write_text(text)
    config = load_config(_web_classes(tree, '{ ci = ["Makefile"] }'), environ={})
    web, payments = config.repository("acme/web"), config.repository("acme/payments")
    assert web is not None and payments is not None
    web_classes, payments_classes = path_classes_of(config, web), path_classes_of(config, payments)

    assert classify([CI_FILE], web_classes) == {"ci"}
    assert classify(["modules/net/main.tf"], web_classes) == {"infra"}  # no slash: any depth
    assert classify(["deploy/run.sh"], web_classes) == {"infra"}
    assert classify(["src/deploy/run.sh", "src/app.py"], web_classes) == set()  # leading slash: the root only
    assert classify(["Makefile"], web_classes) == {"ci"}  # the repository's own pattern, added to `ci`
    assert classify(["Makefile"], payments_classes) == set()
    assert classify([CI_FILE], payments_classes) == {"ci"}


def test_a_repositorys_negated_pattern_never_takes_a_path_out_of_the_platforms_class(tree: Path) -> None:
    config = load_config(_web_classes(tree, '{ ci = ["Makefile", "!.github/workflows/", "!**"] }'), environ={})
    web = config.repository("acme/web")
    assert web is not None
    assert classify([CI_FILE], path_classes_of(config, web)) == {"ci"}


def test_the_diff_reader_takes_crlf_lines_normalises_paths_and_leaves_a_copys_source_alone() -> None:
    assert diff_paths(CRLF_RENAME) == {"src/app.py", "src/main.py"}
    assert diff_paths("--- a/x\n+++ b/.github//workflows/./x.yml\n") == {"x", ".github/workflows/x.yml"}
    copy = f"diff --git a/{CI_FILE} b/docs/ci.yml\nsimilarity index 100%\ncopy from {CI_FILE}\ncopy to docs/ci.yml\n"
    assert diff_paths(copy) == {"docs/ci.yml"}
    # A rename line whose names part at neither half: nothing is guessed from it.
    assert diff_paths("diff --git i/plain.txt w/renamed.txt\nrename from plain.txt\nrename to renamed.txt\n") == {
        "plain.txt",
        "renamed.txt",
    }


@pytest.mark.parametrize("name", ['"b/x\\"', '"b/a\\x"', '"b/\\400"'])
def test_a_quoted_name_git_would_not_write_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(CedargateError, match=r"field `patch`: .* is not a quoted name as git writes it"):
        diff_paths(f"--- /dev/null\n+++ {name}\n@@ -0,0 +1 @@\n+x\n")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('ci = ["#workflows"]', "field `path_classes.ci.0`: `#workflows` is a comment"),
        ('ci = [""]', "field `path_classes.ci.0`: a pattern is empty"),
        ('ci = ["!"]', "field `path_classes.ci.0`: `!` is not a gitignore pattern"),
        ("ci = []", "field `path_classes.ci`: a class needs at least one pattern"),
        (
            'ci = "Jenkinsfile"',
            'field `path_classes.ci`: a class is a list of gitignore patterns: write `["Jenkinsfile"]`',
        ),
        ('"bad name" = ["x"]', "field `path_classes.bad name.[key]`"),
    ],
)
def test_a_bad_path_class_stops_loading_naming_the_field(tree: Path, table: str, expected: str) -> None:
    config = tree / "cedargate.toml"
    config.write_text(config.read_text().replace('ci = [".github/workflows/"]', table))
    with pytest.raises(CedargateError) as raised:
        load_config(config, environ={})
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("manifest", "edit", "expected"),
    [
        (
            "repo/apply_diff.toml",
            ('[paths]\nargument = "patch"\nformat = "diff"\n', ""),
            "field `paths`: operation `apply_diff` changes the paths its `patch` argument names",
        ),
        ("repo/write_file.toml", ('argument = "path"', 'argument = "message"'), "field `paths`"),
        (
            "repo/read_file.toml",
            ("\n[input_schema]\n", '\n[paths]\nargument = "path"\nformat = "path"\n\n[input_schema]\n'),
            "changes no file",
        ),
        (
            "aws/s3.toml",
            ("[[tool]]\n", '[[tool]]\npaths = { argument = "Bucket", format = "path" }\n'),
            "only a repository tool",
        ),
    ],
)
def test_a_manifest_must_name_where_its_operation_reads_changed_paths(
    tree: Path, manifest: str, edit: tuple[str, str], expected: str
) -> None:
    path = tree / "tools" / manifest
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(CedargateError) as raised:
        build_runtime(load_config(tree / "cedargate.toml", environ={})).close()
    assert expected in str(raised.value)


@pytest.fixture
def governed(tree: Path, store_config: StoreConfig) -> Iterator[Runtime]:
    """acme/web in dev with bob as a maintainer: writes are allowed there, CI changes wait for bob."""
    runtime = build_runtime(
        load_config(governed_config(tree, store_config, staging=False, extra='maintainers = ["bob"]\n'), environ={})
    )
    yield runtime
    runtime.close()


def _staged(runtime: Runtime, workspace: str) -> str:
    return git_text(runtime.config.workspaces_dir / "acme/web" / workspace, ["diff", "--cached", "--name-only"])


async def test_a_change_to_a_ci_file_waits_for_a_maintainer_and_runs_once_approved(governed: Runtime) -> None:
    async with client_for(governed) as client:
        s = Session(client)
        plain = await s.ok("repo_write_file", {**WEB, "path": "src/app.py", "content": "TIMEOUT_SECONDS = 9\n"})
        held = await s.refused("repo_write_file", {**WEB, "path": CI_FILE, "content": "on: push\n"})
        assert "ci-changes-need-approval" in held and "awaits approval by `maintainers`" in held
        repo = governed.config.repository("acme/web")
        assert repo is not None and repo.path is not None
        assert git_text(repo.path, ["ls-tree", "-r", "--name-only", "agent/paths"]).split() == [
            "README.md",
            "src/app.py",
        ]
        assert governed.store is not None
        [pending] = ApprovalQueue(governed.store, governed.config.approvals).list(ApprovalStatus.PENDING)
        assert cli_on(governed, "approvals", "approve", pending.id, "--as", "bob") == 0
        done = await s.ok("repo_write_file", {**WEB, "path": CI_FILE, "content": "on: push\n"})
    assert done["commit"] != plain["commit"]
    plain_event, held_event, *_ = audit_events(governed.config.audit.path)
    assert plain_event["changes"] == {"paths": ["src/app.py"], "classes": [], "unclassified": True}
    assert held_event["changes"] == {"paths": [CI_FILE], "classes": ["ci"], "unclassified": False}
    assert CI_FILE in git_text(repo.path, ["ls-tree", "-r", "--name-only", "agent/paths"]).split()


@pytest.mark.parametrize(
    "patch",
    [
        # One harmless file and one CI file in the same diff.
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-TIMEOUT_SECONDS = 5\n+TIMEOUT_SECONDS = 9\n"
        f"--- /dev/null\n+++ b/{CI_FILE}\n@@ -0,0 +1 @@\n+on: push\n",
        # A rename into the CI folder, with no content lines at all.
        f"diff --git a/src/app.py b/{CI_FILE}\nsimilarity index 100%\nrename from src/app.py\nrename to {CI_FILE}\n",
    ],
    ids=["two-files", "pure-rename"],
)
async def test_a_diff_touching_a_ci_file_waits_and_stages_nothing(governed: Runtime, patch: str) -> None:
    async with client_for(governed) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", WEB)
        held = await s.refused("repo_apply_diff", {**WEB, "patch": patch})
    assert "ci-changes-need-approval" in held
    assert _staged(governed, str(created["workspace"])) == ""
    # The trail names what the diff would have changed, whatever part of `patch` it keeps.
    created_event, event = audit_events(governed.config.audit.path)
    assert created_event["tool"] == "repo_create_branch" and created_event["changes"] is None
    assert event["outcome"] == "approval_required"
    assert event["changes"]["classes"] == ["ci"] and CI_FILE in event["changes"]["paths"]
    assert "src/app.py" in event["changes"]["paths"]


async def test_a_diff_git_reads_as_changing_a_path_the_decision_missed_is_refused_whole(
    governed: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: should the header reading ever miss a path git changes, nothing is applied."""
    decided = pipeline.call_changes

    def missing_one(*args: object) -> Changes:
        changes = decided(*args)  # type: ignore[arg-type]
        return Changes(changes.paths - {"README.md"}, changes.classes)

    monkeypatch.setattr(pipeline, "call_changes", missing_one)
    patch = (
        "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
        "@@ -1 +1 @@\n-TIMEOUT_SECONDS = 5\n+TIMEOUT_SECONDS = 9\n"
        "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
        "@@ -1,3 +1,3 @@\n-# acme/web\n+# acme/web (patched)\n \n The storefront.\n"
    )
    async with client_for(governed) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", WEB)
        refused = await s.refused("repo_apply_diff", {**WEB, "patch": patch})
    assert "git reads the diff as changing `README.md`, which the policy decision did not see" in refused
    assert "nothing was applied" in refused
    assert _staged(governed, str(created["workspace"])) == ""


@pytest.mark.parametrize(
    "condition",
    [
        'context.changes.classes.contains("CI")',
        'context.changes.classes.containsAny(["ci", "CI"])',
        '["CI"].containsAll(context.changes.classes) && context.mode == "autonomous"',
    ],
)
def test_a_policy_asking_for_a_path_class_no_config_defines_is_refused(tree: Path, condition: str) -> None:
    """A misspelt class would never match, and the forbid it guards would let every such change through."""
    (tree / "policies" / "team.cedar").write_text(
        f'@id("no-ci")\nforbid (principal, action, resource)\nwhen {{ {condition} }};\n'
    )
    with pytest.raises(CedargateError) as raised:
        build_runtime(load_config(tree / "cedargate.toml", environ={})).close()
    message = str(raised.value)
    assert "team.cedar:1:1: policy `no-ci` asks for path class `CI`" in message
    assert "(defined: `ci`)" in message
    assert cli_main(["--config", str(tree / "cedargate.toml"), "policy", "validate"]) == 2


def test_a_class_a_repository_defines_may_be_asked_for(tree: Path) -> None:
    _web_classes(tree, '{ infra = ["*.tf"] }')
    (tree / "policies" / "team.cedar").write_text(
        '@id("no-infra")\nforbid (principal, action, resource)\nwhen { context.changes.classes.contains("infra") };\n'
    )
    build_runtime(load_config(tree / "cedargate.toml", environ={})).close()


def _commit_files(runtime: Runtime, files: dict[str, str]) -> None:
    """Commit ``files`` onto acme/web's main, as someone working on the repository would."""
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    for name, text in files.items():
        (repo.path / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / name).write_text(text)
    run_git(repo.path, ["add", "--", *files])
    run_git(repo.path, ["commit", "-q", "-m", "more files"], env=COMMITTER)


async def test_renames_git_writes_apply_whatever_their_line_endings_or_names(governed: Runtime) -> None:
    """CRLF lines and a U+2028 in a name end no header early, on the decision's side or the handler's."""
    odd = "notes\u2028v1.txt"
    _commit_files(governed, {odd: "a long enough text to be recognised as renamed\n" * 4})
    separator = f"diff --git a/{odd} b/notes.txt\nsimilarity index 100%\nrename from {odd}\nrename to notes.txt\n"
    async with client_for(governed) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", WEB)
        first = await s.ok("repo_apply_diff", {**WEB, "patch": CRLF_RENAME})
        second = await s.ok("repo_apply_diff", {**WEB, "patch": separator})
    assert first["files"] == ["src/app.py", "src/main.py"]
    assert second["files"] == ["notes.txt", odd]
    staged = _staged(governed, str(created["workspace"])).split("\n")
    assert {"src/main.py", "notes.txt"} <= set(staged)


async def test_copying_a_ci_file_elsewhere_leaves_it_alone_and_needs_no_maintainer(governed: Runtime) -> None:
    _commit_files(governed, {CI_FILE: "on: push\njobs: {}\n" * 3})
    copy = f"diff --git a/{CI_FILE} b/docs/ci.yml\nsimilarity index 100%\ncopy from {CI_FILE}\ncopy to docs/ci.yml\n"
    async with client_for(governed) as client:
        s = Session(client)
        await s.ok("repo_create_branch", WEB)
        applied = await s.ok("repo_apply_diff", {**WEB, "patch": copy})
    assert applied["files"] == ["docs/ci.yml"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".github/workflows", "`.github/workflows` is a folder on `agent/paths`"),
        ("src/app.py/x.yml", "`src/app.py` is a file on `agent/paths`, not a folder"),
    ],
)
async def test_a_write_in_a_workspace_never_replaces_a_folder_or_a_file_a_test_run_removed(
    governed: Runtime, path: str, expected: str
) -> None:
    """`git add` would replace the index's folder (or file) and commit deletions no policy decided on."""
    _commit_files(governed, {CI_FILE: "on: push\n"})
    async with client_for(governed) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", WEB)
        worktree = governed.config.workspaces_dir / "acme/web" / str(created["workspace"])
        # What a test run may leave: the folder (or the file) gone from the worktree, still in the index.
        shutil.rmtree(worktree / ".github")
        (worktree / "src/app.py").unlink()
        refused = await s.refused("repo_write_file", {**WEB, "path": path, "content": "x\n"})
    assert expected in refused
    repo = governed.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    assert CI_FILE in git_text(repo.path, ["ls-tree", "-r", "--name-only", "agent/paths"]).split()
    assert git_text(repo.path, ["rev-list", "--count", "main..agent/paths"]) == "0"


def test_only_docs_changes_are_told_apart_from_docs_and_anything_else(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`classes == ["docs"]` alone also holds when code changes with the docs; `unclassified` says so."""
    text = (tree / "cedargate.toml").read_text()
    (tree / "cedargate.toml").write_text(
        text.replace('ci = [".github/workflows/"]', 'ci = [".github/workflows/"]\ndocs = ["docs/", "*.md"]')
    )
    (tree / "policies" / "docs.cedar").write_text(
        '@id("docs-team-writes-docs-only")\nforbid (principal, action in Action::"risk:write", resource)\n'
        'unless { context.changes.classes == ["docs"] && !context.changes.unclassified };\n'
    )
    docs = "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-a\n+b\n"
    both = docs + "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-a\n+b\n"
    base = [
        "--config",
        str(tree / "cedargate.toml"),
        "policy",
        "explain",
        "--tool",
        "repo_apply_diff",
        "--agent",
        "codex",
    ]
    base += ["--resource", "acme/web", "--arg", "branch=agent/x", "--json"]
    decisions = {}
    for name, patch in (("docs", docs), ("both", both)):
        assert cli_main([*base, "--arg", f"patch={patch}"]) == 0
        decisions[name] = json.loads(capsys.readouterr().out)
    assert decisions["docs"]["effect"] == "allow"
    assert decisions["both"]["effect"] == "deny"
    assert decisions["both"]["changes"] == {
        "paths": ["README.md", "src/app.py"],
        "classes": ["docs"],
        "unclassified": True,
    }


def test_policy_tests_accept_a_class_the_config_defines_and_show_what_a_failing_case_changed(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A case file's `[[repositories]]` replace the configured ones; the config's classes stay askable."""
    _web_classes(tree, '{ infra = ["*.tf"] }')
    (tree / "policies" / "infra.cedar").write_text(
        '@id("no-infra-in-dev")\nforbid (principal, action, resource in Environment::"dev")\n'
        'when { context.changes.classes.contains("infra") };\n'
    )
    cases = tree / "policies" / "tests" / "infra.toml"
    cases.write_text(
        '[[repositories]]\nname = "acme/web"\nenvironment = "dev"\npath_classes = { infra = ["*.tf"] }\n\n'
        '[defaults]\nagent = "codex"\nteam = "storefront"\nuser = "alice"\ntool = "repo_write_file"\n'
        'resource = "acme/web"\n\n'
        '[[case]]\nname = "terraform in dev is refused"\n'
        'args = { branch = "agent/x", path = "net/main.tf", content = "x" }\nexpect = "deny"\n\n'
        '[[case]]\nname = "a misfiled expectation"\n'
        'args = { branch = "agent/x", path = "net/vars.tf", content = "x" }\nexpect = "allow"\n'
    )
    config = str(tree / "cedargate.toml")
    assert cli_main(["--config", config, "policy", "test", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    [failed] = [case for case in report["cases"] if not case["passed"]]
    assert failed["name"] == "a misfiled expectation"
    assert failed["changes"] == {"paths": ["net/vars.tf"], "classes": ["infra"], "unclassified": False}
    assert cli_main(["--config", config, "policy", "test"]) == 1
    assert "  changes:  net/vars.tf (path classes: infra)" in capsys.readouterr().out


async def test_a_diff_of_several_files_without_git_headers_applies_as_written(governed: Runtime) -> None:
    """Forgiving hunk counts (`--recount`) reads the second file's headers as lines of the first hunk;
    such a diff with right counts is read as written, and a miscounted one is still forgiven."""
    patch = (
        "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # acme/web\n \n-The storefront.\n+The storefront!\n"
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-TIMEOUT_SECONDS = 5\n+TIMEOUT_SECONDS = 30\n"
    )
    miscounted = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,7 +1,9 @@\n-TIMEOUT_SECONDS = 30\n+TIMEOUT_SECONDS = 60\n"
    async with client_for(governed) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", WEB)
        applied = await s.ok("repo_apply_diff", {**WEB, "patch": patch})
        await s.ok("repo_commit", {**WEB, "message": "Two files"})
        forgiven = await s.ok("repo_apply_diff", {**WEB, "patch": miscounted})
    assert applied["files"] == ["README.md", "src/app.py"] and forgiven["files"] == ["src/app.py"]
    worktree = governed.config.workspaces_dir / "acme/web" / str(created["workspace"])
    assert (worktree / "README.md").read_text().endswith("The storefront!\n")
    assert (worktree / "src/app.py").read_text() == "TIMEOUT_SECONDS = 60\n"


async def test_an_approved_call_whose_tool_fails_says_its_approval_is_spent(governed: Runtime) -> None:
    ci_write = {**WEB, "branch": "agent/not-created", "path": CI_FILE, "content": "on: push\n", "base": "nope"}
    assert governed.store is not None
    queue = ApprovalQueue(governed.store, governed.config.approvals)
    async with client_for(governed) as client:
        s = Session(client)
        await s.refused("repo_write_file", ci_write)
        [pending] = queue.list(ApprovalStatus.PENDING)
        assert cli_on(governed, "approvals", "approve", pending.id, "--as", "bob") == 0
        failed = await s.refused("repo_write_file", ci_write)
        again = await s.refused("repo_write_file", ci_write)
    assert "field `base`" in failed
    assert f"approval `{pending.id}` was used by this call, so a retry needs a new approval" in failed
    assert "awaits approval by `maintainers`" in again and pending.id not in again
