"""What a load refuses rather than skipping or crashing on: hidden files, long operator chains, deep policies.

A hidden policy was once dropped without a word (fail-open); a flat `||` chain of 20000 terms
killed a serving process on reload and one of 600 printed a traceback; and sibling `if`s were
counted as nested. Each test of a crash loads in a child process, so a segfault fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from mcp import Client
from tests.conftest import ROOT, audit_events, fast_reloading_server, settled_reload, shipped_check

from cedargate.catalog import is_editor_leftover, load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.config import load_config
from cedargate.errors import ManifestError, PolicyError
from cedargate.policy_set import PolicySet, load_policy_set, policy_files
from cedargate.policy_slice import sliced_policy_set
from cedargate.policy_tests import case_files
from cedargate.reload import tree_digest
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

MAX_OPERATORS = 250  # policy_set.MAX_OPERATORS, spelled out so this file also runs against code without it
READ_ME = {"repository": "acme/web", "path": "README.md"}
FREEZE = """
@id("freeze-reads")
@reason("reads are frozen")
forbid (principal, action in Action::"risk:read", resource);
"""


def _validate(tree: Path) -> subprocess.CompletedProcess[str]:
    """``cedargate policy validate`` on ``tree`` in a process of its own, so a crash of Cedar fails the test only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")}
    command = [sys.executable, "-m", "cedargate", "--config", str(tree / "cedargate.toml"), "policy", "validate"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def _schema() -> dict[str, object]:
    return build_schema(load_catalog(ROOT / "tools", check=shipped_check()))


def _load(folder: Path, text: str, name: str = "p.cedar") -> PolicySet:
    (folder / name).write_text(text)
    return load_policy_set(folder, _schema())


def _chain(terms: int, joiner: str = "||") -> str:
    """A forbid unless the repository is one of ``terms``, written as one flat chain."""
    cond = f" {joiner}\n  ".join(f'resource == Repository::"team/repo-{i}"' for i in range(terms))
    return (
        f'@id("allow-listed")\nforbid (principal, action in Action::"risk:write", resource)\nunless {{\n  {cond}\n}};\n'
    )


async def _read_refused(runtime: Runtime) -> bool:
    async with Client(build_server(runtime)) as client:
        return (await client.call_tool("repo_read_file", READ_ME)).is_error


# 1. Hidden files are refused, never skipped


@pytest.mark.parametrize("name", [".guardrails/no-reads.cedar", ".no-reads.cedar", "team/.old/no-reads.cedar"])
def test_a_hidden_policy_is_refused_naming_it_not_skipped(tree: Path, name: str) -> None:
    path = tree / "policies" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FREEZE)
    with pytest.raises(PolicyError, match="hidden") as refused:
        policy_files(tree / "policies")
    assert str(path) in str(refused.value) and "rename" in str(refused.value) and "move it out" in str(refused.value)


def test_policy_validate_refuses_a_policy_in_a_hidden_folder(tree: Path) -> None:
    (tree / "policies/.guardrails").mkdir()
    (tree / "policies/.guardrails/no-reads.cedar").write_text(FREEZE)
    done = _validate(tree)
    assert done.returncode != 0, done.stdout
    assert ".guardrails/no-reads.cedar: is in the hidden folder `.guardrails`" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", [".draft.toml", ".drafts/read.toml"])
def test_a_hidden_manifest_is_refused_naming_it(tree: Path, name: str) -> None:
    path = tree / "tools" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((tree / "tools/repo/read_file.toml").read_text().replace("repo_read_file", "repo_read_draft"))
    with pytest.raises(ManifestError, match="hidden") as refused:
        load_catalog(tree / "tools", check=shipped_check())
    assert str(path) in str(refused.value)


def test_editor_leftovers_are_still_skipped(tree: Path) -> None:
    os.symlink("user@host.4242:1764200000", tree / "policies/.#dev.cedar")  # dangling, as emacs leaves it
    (tree / "policies/.hidden-notes").mkdir()
    os.symlink("nowhere", tree / "policies/.hidden-notes/.#x.cedar")
    (tree / "policies/dev.cedar~").write_text("not a policy")
    (tree / "policies/.dev.cedar.swp").write_text("not a policy")
    assert all(".#" not in str(p) for p in policy_files(tree / "policies"))


async def test_a_hidden_policy_added_while_serving_is_refused_and_the_last_good_set_stays(runtime: Runtime) -> None:
    hidden = runtime.config.policies_dir / ".guardrails"
    hidden.mkdir()
    (hidden / "freeze.cedar").write_text(FREEZE)
    result = await settled_reload(runtime)
    assert result is not None and not result.applied, "a hidden policy must not be passed over"
    assert ".guardrails/freeze.cedar: is in the hidden folder" in (result.error or "")
    assert await _read_refused(runtime) is False
    hidden.rename(runtime.config.policies_dir / "guardrails")
    result = await settled_reload(runtime)
    assert result is not None and result.applied, result.error
    assert await _read_refused(runtime) is True


# 1b. A Kubernetes ConfigMap volume, and links between hidden and visible names


def _configmap(folder: Path, files: dict[str, str], stamp: str) -> None:
    """Publish ``files`` in ``folder`` as kubelet does: ``..<stamp>/`` holds them, ``..data`` links to it
    (swapped atomically on an update) and each key is a top-level link ``name -> ..data/name``."""
    folder.mkdir(exist_ok=True)
    data = folder / f"..{stamp}"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    os.symlink(data.name, folder / "..data_tmp")
    os.replace(folder / "..data_tmp", folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            os.symlink(f"..data/{name}", folder / name)
    for link in folder.iterdir():
        if link.is_symlink() and link.name != "..data" and link.name not in files:
            link.unlink()
    if old is not None:
        shutil.rmtree(folder / old)


def _mounted_policies(tree: Path) -> dict[str, str]:
    """Turn ``tree/policies`` into a ConfigMap volume of its policies; the files it publishes."""
    policies = tree / "policies"
    files = {path.name: path.read_text() for path in sorted(policies.glob("*.cedar"))}
    shutil.rmtree(policies)
    _configmap(policies, files, "2026_11_27_03_50_00.123456789")
    return files


def test_policies_mounted_from_a_configmap_load_under_their_visible_names(tree: Path) -> None:
    files = _mounted_policies(tree)
    policies = tree / "policies"
    assert policy_files(policies) == [policies / name for name in sorted(files)]
    assert len(load_policy_set(policies, _schema()).info) > 0
    done = _validate(tree)
    assert done.returncode == 0, done.stderr
    assert f"in {len(files)} files" in done.stdout


def test_manifests_and_policy_test_cases_mounted_from_a_configmap_load(tmp_path: Path) -> None:
    manifests = {
        p.relative_to(ROOT / "tools").as_posix().replace("/", "_"): p.read_text()
        for p in sorted((ROOT / "tools").rglob("*.toml"))
    }
    _configmap(tmp_path / "tools", manifests, "2026_11_27_03_50_00.1")
    assert len(load_catalog(tmp_path / "tools", check=shipped_check())) == len(
        load_catalog(ROOT / "tools", check=shipped_check())
    )
    cases = {p.name: p.read_text() for p in sorted((ROOT / "policies/tests").glob("*.toml"))}
    _configmap(tmp_path / "cases", cases, "2026_11_27_03_50_00.1")
    assert case_files(tmp_path / "cases") == [tmp_path / "cases" / name for name in sorted(cases)]


def test_a_configmap_key_with_no_visible_link_is_still_refused(tree: Path) -> None:
    _mounted_policies(tree)
    (tree / "policies/dev.cedar").unlink()  # published in `..data/` only: nothing visible says it is meant
    with pytest.raises(PolicyError, match="hidden folder") as refused:
        policy_files(tree / "policies")
    assert "policies/..2026_11_27_03_50_00.123456789/dev.cedar:" in str(refused.value)


@pytest.mark.parametrize(
    ("real", "link", "target"),
    [
        (".real/x.cedar", "team/x.cedar", "../.real/x.cedar"),  # the visible name links into a hidden folder
        ("team/x.cedar", ".alias.cedar", "team/x.cedar"),  # a hidden link to a visible file
        ("team/x.cedar", ".hidden/x.cedar", "../team/x.cedar"),
    ],
)
def test_a_hidden_name_of_a_visible_file_is_skipped_not_loaded_twice(
    tmp_path: Path, real: str, link: str, target: str
) -> None:
    folder = tmp_path / "policies"
    for name in (real, link):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / real).write_text(FREEZE)
    os.symlink(target, folder / link)
    assert policy_files(folder) == [folder / "team/x.cedar"]
    assert len(load_policy_set(folder, _schema()).info) == 1


async def test_a_configmap_update_is_reloaded_and_the_digest_names_visible_files_only(tree: Path) -> None:
    files = _mounted_policies(tree)
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={}))
    try:
        assert tree_digest(runtime.config) == tree_digest(runtime.config)
        assert await runtime.reloader.poll() is None
        _configmap(runtime.config.policies_dir, {**files, "freeze.cedar": FREEZE}, "2026_11_27_04_00_00.1")
        result = await settled_reload(runtime)
        assert result is not None and result.applied, result.error
        assert await _read_refused(runtime) is True
        _configmap(runtime.config.policies_dir, files, "2026_11_27_04_10_00.1")  # the key is taken out again
        result = await settled_reload(runtime)
        assert result is not None and result.applied, result.error
        assert await _read_refused(runtime) is False
    finally:
        runtime.close()


def test_macos_appledouble_files_are_skipped_as_leftovers(tree: Path) -> None:
    appledouble = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02"
    (tree / "policies/._dev.cedar").write_bytes(appledouble)
    (tree / "policies/team").mkdir()
    (tree / "policies/team/._x.cedar").write_bytes(appledouble)
    (tree / "tools/repo/._read_file.toml").write_bytes(appledouble)
    assert is_editor_leftover("._dev.cedar") and not is_editor_leftover("..data")
    assert all("._" not in path.name for path in policy_files(tree / "policies"))
    assert load_catalog(tree / "tools", check=shipped_check()).get("repo_read_file") is not None


# 2. Long operator chains


def _load_in_subprocess(policies: Path, recursion_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """Load the policies in a child process: a native crash fails the test, not pytest."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from cedargate.errors import PolicyError
        from cedargate.policy_set import load_policy_set
        schema = {{"": {{"entityTypes": {{"Repository": {{}}}}, "actions": {{}}}}}}
        if {recursion_limit!r}:
            sys.setrecursionlimit({recursion_limit!r})  # as deep in the stack as a serving process may be
        try:
            load_policy_set(Path({str(policies)!r}), schema)
            print("loaded")
        except PolicyError as exc:
            print("refused:", exc)
        """
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("terms", "joiner"), [(600, "||"), (20000, "||"), (20000, "&&"), (20000, "+"), (20000, ".")])
def test_a_long_operator_chain_is_refused_naming_the_policy_not_crashed_on(
    tmp_path: Path, terms: int, joiner: str
) -> None:
    if joiner == "+":
        text = "permit (principal, action, resource)\nwhen { 0 == " + " + ".join(["1"] * terms) + " };\n"
    elif joiner == ".":
        text = "permit (principal, action, resource)\nwhen { context" + ".a" * terms + " };\n"
    else:
        text = _chain(terms, joiner)
    (tmp_path / "chain.cedar").write_text(text)
    done = _load_in_subprocess(tmp_path)
    assert done.returncode == 0, f"the load crashed ({done.returncode}): {done.stderr[-500:]}"
    assert f"refused: {tmp_path / 'chain.cedar'}:" in done.stdout
    assert f"more than {MAX_OPERATORS} operators" in done.stdout and "split the policy" in done.stdout


def test_the_longest_chain_that_loads_decides_and_one_more_term_is_refused(tmp_path: Path) -> None:
    """Every decision reads its policies back from JSON; a policy Cedar cannot read back is refused at load."""
    terms = 40
    while True:
        try:
            loaded = _load(tmp_path, _chain(terms))
        except PolicyError as exc:
            refused = str(exc)
            break
        sliced_policy_set(loaded.static_policies, list(loaded.static_policies))  # what every decision does
        terms += 1
        assert terms < MAX_OPERATORS, "a chain Cedar cannot read back when deciding was loaded"
    assert refused.startswith(f"{tmp_path / 'p.cedar'}:1:1: policy `allow-listed` nests ")
    assert "split the policy into several" in refused


def test_a_recursion_error_while_loading_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "fine.cedar").write_text(FREEZE)
    (tmp_path / "long.cedar").write_text(_chain(MAX_OPERATORS - 10))
    done = _load_in_subprocess(tmp_path, recursion_limit=300)
    assert done.returncode == 0, f"the load crashed ({done.returncode}): {done.stderr[-500:]}"
    assert f"refused: {tmp_path / 'long.cedar'}: a policy is nested too deeply to read" in done.stdout


def test_policy_validate_refuses_a_long_chain_without_a_traceback(tree: Path) -> None:
    (tree / "policies/allow-listed.cedar").write_text(_chain(600))
    done = _validate(tree)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-800:]
    assert f"{tree / 'policies/allow-listed.cedar'}:1: policy has more than {MAX_OPERATORS} operators" in done.stderr


async def test_a_serving_process_survives_a_long_chain_on_reload(tree: Path) -> None:
    async with fast_reloading_server(tree) as client:
        assert (await client.call_tool("repo_read_file", READ_ME)).is_error is False
        (tree / "policies/allow-listed.cedar").write_text(_chain(20000))
        with anyio.fail_after(60):
            while not any(e["outcome"] == "failed" for e in audit_events(tree / "audit.jsonl")):
                await anyio.sleep(0.05)
        assert (await client.call_tool("repo_read_file", READ_ME)).is_error is False  # still serving
    [event] = [e for e in audit_events(tree / "audit.jsonl") if e["tool"] == "cedargate.policy_reload"]
    assert f"more than {MAX_OPERATORS} operators" in event["error"]


# 3. Sibling `if`s do not nest


def test_sibling_ifs_in_a_set_or_in_separate_conditions_are_not_counted_as_nested(tmp_path: Path) -> None:
    conds = "\n".join('when { if context.risk == "read" then true else false }' for _ in range(210))
    items = ", ".join('(if context.risk == "write" then false else true)' for _ in range(210))
    text = (
        f"permit (principal, action, resource)\n{conds};\n\n"
        f"forbid (principal, action, resource)\nunless {{ [{items}].contains(true) }};\n"
    )
    assert len(_load(tmp_path, text).info) == 2


def test_ifs_nested_in_each_others_else_are_still_counted(tmp_path: Path) -> None:
    chain = "".join(f'if context.risk == "r{i}" then false else ' for i in range(201)) + "true"
    with pytest.raises(PolicyError, match=r"p\.cedar:\d+: policy nests deeper than 200 levels"):
        _load(tmp_path, f"permit (principal, action, resource)\nwhen {{ {chain} }};\n")
