"""Hot reload at its edges: boolean schemas, unexpected errors, symlinks, editor files, deep nesting, config edits.

Each of these once stopped the server, skipped a policy silently, or applied nothing without a word.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from tests.conftest import audit_events, fast_reloading_server, settled_reload

import cedargate.reload as reload_module
from cedargate.admin import validate_policies
from cedargate.cedar_schema import build_schema
from cedargate.config import load_config
from cedargate.errors import ManifestError, PolicyError
from cedargate.policy_set import load_policy_set, policy_files
from cedargate.reload import tree_digest
from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

MAX_NESTING = 200  # policy_set.MAX_NESTING, spelled out so this file also runs against code without it
READ_ME = {"repository": "acme/web", "path": "README.md"}
FREEZE = """
@id("freeze-reads")
@reason("reads are frozen")
forbid (principal, action in Action::"risk:read", resource);
"""


def _tagged_manifest(tools_dir: Path, toml: str) -> Path:
    """A copy of ``repo_read_file`` as ``repo_read_tagged``, with ``toml`` (a ``tags`` argument) appended."""
    text = (tools_dir / "repo/read_file.toml").read_text().replace("repo_read_file", "repo_read_tagged")
    path = tools_dir / "repo/tagged.toml"
    path.write_text(text + "\n" + toml)
    return path


async def _read(runtime: Runtime) -> bool:
    """Whether a read of the dev repository is refused under the set in force."""
    async with Client(build_server(runtime)) as client:
        return (await client.call_tool("repo_read_file", READ_ME)).is_error


# 1. Boolean schemas and unexpected errors


async def test_an_array_of_items_true_is_published_with_the_argument_invisible_to_policies(runtime: Runtime) -> None:
    _tagged_manifest(runtime.config.tools_dir, '[input_schema.properties.tags]\ntype = "array"\nitems = true\n')
    result = await settled_reload(runtime)
    assert result is not None and result.applied and result.tools_changed
    schema = build_schema(runtime.catalog)
    assert "tags" not in schema[""]["actions"]["repo_read_tagged"]["appliesTo"]["context"]["attributes"]["args"]


async def test_a_property_schema_of_true_loads(runtime: Runtime) -> None:
    _tagged_manifest(runtime.config.tools_dir, "[input_schema.properties]\ntags = true\n")
    result = await settled_reload(runtime)
    assert result is not None and result.applied, result.error


async def test_items_false_is_refused_naming_the_manifest_and_field(runtime: Runtime) -> None:
    path = _tagged_manifest(runtime.config.tools_dir, '[input_schema.properties.tags]\ntype = "array"\nitems = false\n')
    result = await settled_reload(runtime)
    assert result is not None and not result.applied and result.generation == 1
    assert str(path) in (result.error or "")
    assert "input_schema.properties.tags.items" in (result.error or "") and "`false`" in (result.error or "")
    with pytest.raises(ManifestError, match=r"tagged\.toml: tool `repo_read_tagged`"):
        validate_policies(runtime.config)


async def test_an_unexpected_error_while_loading_is_refused_audited_and_the_old_set_stays(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("'bool' object has no attribute 'get'")

    monkeypatch.setattr(reload_module, "build_snapshot", broken)
    (runtime.config.policies_dir / "freeze.cedar").write_text(FREEZE)
    with caplog.at_level(logging.ERROR, logger="cedargate.reload"):
        result = await settled_reload(runtime)
    assert result is not None and not result.applied and result.generation == 1
    assert "unexpected AttributeError" in (result.error or "")
    assert any(r.exc_info for r in caplog.records), "the traceback is logged"
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "failed" and "unexpected AttributeError" in event["error"]
    assert await runtime.reloader.poll() is None  # once per change, not once per poll
    assert await _read(runtime) is False


async def test_a_serving_process_survives_a_manifest_with_a_false_schema(tree: Path) -> None:
    async with fast_reloading_server(tree) as client:
        assert (await client.call_tool("repo_read_file", READ_ME)).is_error is False
        _tagged_manifest(tree / "tools", "[input_schema.properties]\ntags = false\n")
        with anyio.fail_after(20):
            while not any(e["outcome"] == "failed" for e in audit_events(tree / "audit.jsonl")):
                await anyio.sleep(0.05)
        (tree / "tools/repo/tagged.toml").unlink()
        (tree / "policies/freeze.cedar").write_text(FREEZE)
        with anyio.fail_after(20):  # still serving, and still reloading
            while not (await client.call_tool("repo_read_file", READ_ME)).is_error:
                await anyio.sleep(0.05)
    reloads = [e for e in audit_events(tree / "audit.jsonl") if e["tool"] == "cedargate.policy_reload"]
    assert reloads[0]["outcome"] == "failed" and "tagged.toml" in reloads[0]["error"]
    assert reloads[-1]["outcome"] == "succeeded"


# 2-3. Symlinked folders


async def test_policies_in_a_symlinked_subfolder_are_loaded_validated_and_watched(
    runtime: Runtime, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-policies"
    shared.mkdir()
    (shared / "freeze.cedar").write_text(FREEZE)
    before = tree_digest(runtime.config)
    os.symlink(shared, runtime.config.policies_dir / "shared")
    assert tree_digest(runtime.config) != before
    assert runtime.config.policies_dir / "shared/freeze.cedar" in policy_files(runtime.config.policies_dir)
    result = await settled_reload(runtime)
    assert result is not None and result.applied
    assert await _read(runtime) is True
    assert "shared/freeze.cedar" in audit_events(runtime.config.audit.path)[0]["arguments"]["policy_files"]
    assert str(runtime.config.policies_dir / "shared/freeze.cedar") in validate_policies(runtime.config)["files"]


def test_a_symlink_loop_under_policies_is_refused_naming_it(tree: Path) -> None:
    (tree / "policies/team").mkdir()
    os.symlink("..", tree / "policies/team/loop")
    with pytest.raises(PolicyError, match=r"policies/team/loop: leads back to .*policies`, a folder that contains"):
        policy_files(tree / "policies")


async def test_a_symlinked_policies_folder_is_followed_as_it_is_at_each_poll(tree: Path) -> None:
    (tree / "policies").rename(tree / "policies-v1")
    os.symlink("policies-v1", tree / "policies")
    config = load_config(tree / "cedargate.toml", environ={})
    assert config.policies_dir == tree / "policies"  # the link, not its target
    from cedargate.runtime import build_runtime

    runtime = build_runtime(config)
    try:
        import shutil

        shutil.copytree(tree / "policies-v1", tree / "policies-v2")
        (tree / "policies-v2/freeze.cedar").write_text(FREEZE)
        os.symlink("policies-v2", tree / "policies.new")
        os.replace(tree / "policies.new", tree / "policies")
        result = await settled_reload(runtime)
        assert result is not None and result.applied
        assert await _read(runtime) is True
    finally:
        runtime.close()


# 9. Hidden files


async def test_an_editor_lock_file_neither_blocks_nor_triggers_a_reload(runtime: Runtime) -> None:
    os.symlink("user@host.4242:1764200000", runtime.config.policies_dir / ".#dev.cedar")  # dangling, as emacs does
    (runtime.config.tools_dir / "repo/.#read_file.toml").symlink_to("nowhere")
    assert await runtime.reloader.poll() is None and await runtime.reloader.poll() is None
    (runtime.config.policies_dir / "freeze.cedar").write_text(FREEZE)
    result = await settled_reload(runtime)
    assert result is not None and result.applied, result.error
    assert await _read(runtime) is True
    assert all(not p.name.startswith(".") for p in policy_files(runtime.config.policies_dir))


# 5. Deep nesting


def _load_in_subprocess(policies: Path) -> subprocess.CompletedProcess[str]:
    """Load the policies in a child process: a native crash fails the test, not pytest."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from cedargate.errors import PolicyError
        from cedargate.policy_set import load_policy_set
        schema = {{"": {{"entityTypes": {{}}, "actions": {{}}}}}}
        try:
            load_policy_set(Path({str(policies)!r}), schema)
            print("loaded")
        except PolicyError as exc:
            print("refused:", exc)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={**os.environ}
    )


@pytest.mark.parametrize("depth", [1000, 20000])
def test_a_deeply_nested_policy_is_refused_not_crashed_on(tmp_path: Path, depth: int) -> None:
    (tmp_path / "deep.cedar").write_text(
        '@id("deep")\n// a comment ((((\n@reason("((( in a string")\nforbid (principal, action, resource)\n'
        "when { " + "(" * depth + "true" + ")" * depth + " };\n"
    )
    done = _load_in_subprocess(tmp_path)
    assert done.returncode == 0, f"the load crashed ({done.returncode}): {done.stderr[-500:]}"
    assert f"refused: {tmp_path / 'deep.cedar'}:5: policy nests deeper than {MAX_NESTING}" in done.stdout


def test_nesting_within_the_limit_and_brackets_in_strings_and_comments_still_load(tmp_path: Path) -> None:
    depth = MAX_NESTING - 2  # the policy's own `(` and `{` are two levels
    (tmp_path / "ok.cedar").write_text(
        "// " + "(" * 500 + "\n"
        f'@reason("{"[" * 500}")\n'
        "forbid (principal, action, resource) when { " + "(" * depth + "true" + ")" * depth + " };\n"
    )
    schema = {
        "": {
            "entityTypes": {"A": {}},
            "actions": {"a": {"appliesTo": {"principalTypes": ["A"], "resourceTypes": ["A"]}}},
        }
    }
    assert len(load_policy_set(tmp_path, schema).info) == 1


# 4. Config edits


def _edit_config(runtime: Runtime, old: str, new: str) -> None:
    path = runtime.config.source
    assert path is not None
    text = path.read_text()
    path.write_text(text.replace(old, new) if old else text + new)


async def test_a_config_edit_is_reported_once_and_not_applied(runtime: Runtime) -> None:
    _edit_config(runtime, 'environment = "dev"', 'environment = "prod"')
    result = await settled_reload(runtime)
    assert result is not None and not result.applied and result.generation == 1
    assert "changed on disk and is not applied" in (result.error or "") and "restart" in (result.error or "")
    assert await runtime.reloader.poll() is None and await runtime.reloader.poll() is None
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "failed" and event["arguments"]["config_file"] == str(runtime.config.source)
    (runtime.config.policies_dir / "freeze.cedar").write_text(FREEZE)  # policies still reload
    result = await settled_reload(runtime)
    assert result is not None and result.applied
    assert runtime.config.repository("acme/web").environment == "dev"  # type: ignore[union-attr]


async def test_a_file_the_config_on_disk_shadows_is_not_enforced_until_a_restart(runtime: Runtime) -> None:
    _edit_config(runtime, "", '\n[policy]\nshadow_files = ["trial.cedar"]\n')
    reported = await settled_reload(runtime)
    assert reported is not None and "adds `trial.cedar`" in (reported.error or "")
    (runtime.config.policies_dir / "trial.cedar").write_text(FREEZE)
    refused = await settled_reload(runtime)
    assert refused is not None and not refused.applied
    assert "`trial.cedar` would be enforced" in (refused.error or "")
    assert await _read(runtime) is False
    _edit_config(runtime, '\n[policy]\nshadow_files = ["trial.cedar"]\n', "")  # back to the config in force
    result = await settled_reload(runtime)
    assert result is not None and result.applied, result.error
    assert await _read(runtime) is True


async def test_a_config_that_no_longer_loads_is_reported(runtime: Runtime) -> None:
    _edit_config(runtime, "", "\n[policy]\nno_such_field = 1\n")
    result = await settled_reload(runtime)
    assert result is not None and "does not load, so a restart would fail" in (result.error or "")


# 8. Hashes in reload events


async def test_the_reload_event_hashes_each_policy_file_and_manifest(runtime: Runtime) -> None:
    freeze = runtime.config.policies_dir / "freeze.cedar"
    freeze.write_text(FREEZE)
    result = await settled_reload(runtime)
    assert result is not None and result.applied
    [event] = audit_events(runtime.config.audit.path)
    hashes = event["arguments"]["policy_sha256"]
    assert set(hashes) == set(event["arguments"]["policy_files"])
    assert hashes["freeze.cedar"] == hashlib.sha256(freeze.read_bytes()).hexdigest()
    manifests = event["arguments"]["manifest_sha256"]
    assert manifests["repo_read_file"] == runtime.catalog.tools["repo_read_file"].content_hash
    assert set(manifests) == set(runtime.catalog.tools)
