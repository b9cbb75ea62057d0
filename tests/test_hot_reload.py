"""Hot reload on a running server: a good set replaces the old between calls, a bad one is refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from tests.conftest import audit_events, fast_reloading_server, settled_reload

import cedargate.reload as reload_module
from cedargate.audit.verify import verify_log
from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

READ_ME = {"repository": "acme/web", "path": "README.md"}
NO_READS = """
@id("no-reads-in-dev")
@reason("reads in dev are paused")
forbid (principal, action in Action::"risk:read", resource in Environment::"dev");
"""


async def test_a_valid_new_policy_takes_effect_on_the_next_call_and_is_audited(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        before = await client.call_tool("repo_read_file", READ_ME)
        (runtime.config.policies_dir / "pause.cedar").write_text(NO_READS)
        result = await settled_reload(runtime)
        after = await client.call_tool("repo_read_file", READ_ME)
    assert before.is_error is False
    assert result is not None and result.applied and result.generation == 2
    assert after.is_error is True and "no-reads-in-dev" in after.content[0].text  # type: ignore[union-attr]
    _read, reload, denied = audit_events(runtime.config.audit.path)
    assert reload["tool"] == "cedargate.policy_reload"
    assert reload["outcome"] == "succeeded"
    assert "pause.cedar" in reload["arguments"]["policy_files"]
    assert denied["decision"]["policies"][0]["id"] == "no-reads-in-dev"
    assert verify_log(runtime.config.audit.path).ok


async def test_a_bad_policy_dropped_into_a_running_server_leaves_the_old_set_in_force(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(build_server(runtime)) as client:
        (runtime.config.policies_dir / "broken.cedar").write_text(
            '@id("broken")\nforbid (principal, action == Action::"repo_raed_file", resource);\n'
        )
        result = await settled_reload(runtime)
        again = await runtime.reloader.poll()
        read = await client.call_tool("repo_read_file", READ_ME)
    assert result is not None and not result.applied and result.generation == 1
    assert again is None  # refused once per change on disk, not once per poll
    assert read.is_error is False
    refused, allowed = audit_events(runtime.config.audit.path)
    assert refused["tool"] == "cedargate.policy_reload"
    assert refused["outcome"] == "failed"
    assert "generation 1 stays in force" in refused["error"]
    assert "broken.cedar:1:1" in refused["error"]
    assert allowed["decision"]["policies"][0]["id"] == "reads-allowed"
    assert any("policy reload refused" in r.getMessage() for r in caplog.records)


async def test_a_broken_manifest_is_refused_and_the_tools_stay(runtime: Runtime) -> None:
    (runtime.config.tools_dir / "repo/bad.toml").write_text('name = "Bad Name"\n')
    result = await settled_reload(runtime)
    assert result is not None and not result.applied
    assert "bad.toml" in (result.error or "")
    assert "repo_read_file" in runtime.catalog.tools


async def test_a_new_manifest_is_listed_and_handshake_clients_are_told(runtime: Runtime) -> None:
    notices: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            notices.append(message)

    async with Client(build_server(runtime), mode="legacy", message_handler=on_message) as client:
        assert "repo_show_file" not in [t.name for t in (await client.list_tools()).tools]
        shutil.copy(runtime.config.tools_dir / "repo/read_file.toml", runtime.config.tools_dir / "repo/show.toml")
        text = (runtime.config.tools_dir / "repo/show.toml").read_text()
        (runtime.config.tools_dir / "repo/show.toml").write_text(text.replace("repo_read_file", "repo_show_file"))
        result = await settled_reload(runtime)
        with anyio.fail_after(5):
            while not notices:
                await anyio.sleep(0)
        names = [t.name for t in (await client.list_tools()).tools]
        shown = await client.call_tool("repo_show_file", READ_ME)
    assert result is not None and result.tools_changed
    assert "repo_show_file" in names
    assert shown.is_error is False


async def test_a_new_manifest_reaches_2026_clients_on_their_listen_stream(runtime: Runtime) -> None:
    async with Client(build_server(runtime), mode="2026-07-28") as client:
        async with client.listen(tools_list_changed=True) as subscription:
            text = (runtime.config.tools_dir / "repo/read_file.toml").read_text()
            (runtime.config.tools_dir / "repo/show.toml").write_text(text.replace("repo_read_file", "repo_show_file"))
            await settled_reload(runtime)
            with anyio.fail_after(5):
                event = await subscription.__aiter__().__anext__()
        names = [t.name for t in (await client.list_tools()).tools]
    assert type(event).__name__ == "ToolsListChanged"
    assert "repo_show_file" in names


async def test_an_unchanged_tree_is_not_reloaded(runtime: Runtime) -> None:
    assert await runtime.reloader.poll() is None
    assert audit_events(runtime.config.audit.path) == []


async def test_a_serving_process_picks_up_a_new_policy_and_keeps_it_after_a_bad_one(tree: Path) -> None:
    async with fast_reloading_server(tree) as client:
        assert (await client.call_tool("repo_read_file", READ_ME)).is_error is False
        (tree / "policies/pause.cedar").write_text(NO_READS)
        with anyio.fail_after(20):  # each try is a real round trip; the watcher polls every 50 ms
            while not (await client.call_tool("repo_read_file", READ_ME)).is_error:
                pass
        (tree / "policies/broken.cedar").write_text('forbid (principal, action == Action::"nope", resource);\n')
        with anyio.fail_after(20):
            while not any(e["outcome"] == "failed" for e in audit_events(tree / "audit.jsonl")):
                await client.call_tool("repo_read_file", READ_ME)
        still = await client.call_tool("repo_read_file", READ_ME)
    assert still.is_error is True and "no-reads-in-dev" in still.content[0].text  # type: ignore[union-attr]
    reloads = [e for e in audit_events(tree / "audit.jsonl") if e["tool"] == "cedargate.policy_reload"]
    assert [e["outcome"] for e in reloads] == ["succeeded", "failed"]


async def test_a_policy_file_caught_mid_write_is_loaded_only_once_it_holds_still(runtime: Runtime) -> None:
    """Cut before its last `forbid`, a file still parses and validates: it must never be in force."""
    pause = runtime.config.policies_dir / "pause.cedar"
    half = NO_READS.split("forbid")[0]  # the annotations, then nothing: a valid, empty file
    pause.write_text(half)
    assert await runtime.reloader.poll() is None  # seen changed: wait for it to hold still
    pause.write_text(NO_READS)  # the second write lands before the next poll
    assert await runtime.reloader.poll() is None
    assert runtime.snapshots.current.generation == 1
    result = await runtime.reloader.poll()
    assert result is not None and result.applied and result.generation == 2
    [reload] = audit_events(runtime.config.audit.path)
    assert reload["outcome"] == "succeeded"
    async with Client(build_server(runtime)) as client:
        read = await client.call_tool("repo_read_file", READ_ME)
    assert read.is_error is True and "no-reads-in-dev" in read.content[0].text  # type: ignore[union-attr]


async def test_contents_that_change_while_loading_are_not_put_in_force(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    pause = runtime.config.policies_dir / "pause.cedar"
    pause.write_text(NO_READS)
    assert await runtime.reloader.poll() is None
    real_build = reload_module.build_snapshot

    def build_then_edit(*args: Any, **kwargs: Any) -> Any:
        built = real_build(*args, **kwargs)
        pause.write_text(NO_READS + "\n// edited while the set was loading\n")
        return built

    monkeypatch.setattr(reload_module, "build_snapshot", build_then_edit)
    assert await runtime.reloader.poll() is None  # what was read may be half of an edit
    assert runtime.snapshots.current.generation == 1 and audit_events(runtime.config.audit.path) == []
    monkeypatch.setattr(reload_module, "build_snapshot", real_build)
    assert await runtime.reloader.poll() is None  # the new contents settle first
    result = await runtime.reloader.poll()
    assert result is not None and result.applied
