"""`audit verify` on real trails: tampered, reordered and (with signed checkpoints) truncated logs fail."""

from __future__ import annotations

import io
import json
from contextlib import closing
from pathlib import Path

import pytest
from mcp import Client
from tests.conftest import sample_event

from cedargate.audit.lines import PROGRESS_EVERY_LINES
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.query import read_events
from cedargate.audit.record import EventRecord
from cedargate.audit.verify import verify_log
from cedargate.cli import _progress, main
from cedargate.config import load_config
from cedargate.errors import AuditWriteError
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


async def _calls(runtime: Runtime, count: int) -> None:
    async with Client(build_server(runtime)) as client:
        for _ in range(count):
            await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})


@pytest.fixture
async def log(runtime: Runtime) -> Path:
    await _calls(runtime, 4)
    return runtime.config.audit.path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys/signer.pem", tmp_path / "keys/audit.pub"
    assert main(["audit", "keygen", "--private-key", str(private), "--public-key", str(public)]) == 0
    return private, public


def _verify(log: Path, *extra: str) -> tuple[int, dict[str, object]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["audit", "verify", "--log", str(log), "--json", *extra])
    return status, json.loads(out.getvalue())


async def test_an_intact_log_verifies(log: Path) -> None:
    status, report = _verify(log)
    assert status == 0 and report["ok"] is True and report["events"] == 4


async def test_a_tampered_event_fails_verify_at_its_line(log: Path) -> None:
    lines = log.read_text().splitlines()
    event = json.loads(lines[1])
    event["outcome"] = "denied"
    lines[1] = json.dumps(event, sort_keys=True, separators=(",", ":"))
    log.write_text("\n".join(lines) + "\n")
    status, report = _verify(log)
    assert status == 1 and report["line"] == 2 and "altered" in str(report["problem"])


async def test_reordered_events_fail_verify(log: Path) -> None:
    lines = log.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    log.write_text("\n".join(lines) + "\n")
    status, report = _verify(log)
    assert status == 1 and report["line"] == 2 and "chain broken" in str(report["problem"])


async def test_a_removed_event_fails_verify(log: Path) -> None:
    lines = log.read_text().splitlines()
    del lines[1]
    log.write_text("\n".join(lines) + "\n")
    status, report = _verify(log)
    assert status == 1 and report["line"] == 2


async def test_a_truncated_tail_passes_the_chain_but_fails_the_signed_checkpoint(
    log: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoints = tmp_path / "checkpoints.jsonl"
    assert (
        main(["audit", "checkpoint", "--key", str(private), "--log", str(log), "--checkpoints", str(checkpoints)]) == 0
    )
    flags = ("--checkpoints", str(checkpoints), "--public-key", str(public))
    status, report = _verify(log, *flags)
    assert status == 0 and report["checkpoints"] == 1
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")
    assert _verify(log)[0] == 0  # the chain alone cannot see a clean cut
    status, report = _verify(log, *flags)
    assert status == 1
    assert "log truncated" in str(report["problem"]) and "vouches for 4 events but the log has 3" in str(
        report["problem"]
    )


async def test_a_removed_checkpoint_file_fails_verify_rather_than_checking_nothing(
    log: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoints = tmp_path / "checkpoints.jsonl"
    main(["audit", "checkpoint", "--key", str(private), "--log", str(log), "--checkpoints", str(checkpoints)])
    checkpoints.unlink()  # what someone cutting the log's tail would do next
    status, report = _verify(log, "--checkpoints", str(checkpoints), "--public-key", str(public))
    assert status == 1 and report["checkpoints"] == 0
    assert f"checkpoint file `{checkpoints}` does not exist" in str(report["problem"])
    status, report = _verify(log, "--checkpoints", str(tmp_path), "--public-key", str(public))
    assert status == 1 and "is a folder, not a checkpoint file" in str(report["problem"])


async def test_an_edited_checkpoint_fails_its_signature(log: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = keys
    checkpoints = tmp_path / "checkpoints.jsonl"
    main(["audit", "checkpoint", "--key", str(private), "--log", str(log), "--checkpoints", str(checkpoints)])
    record = json.loads(checkpoints.read_text())
    record["events"] = 2
    checkpoints.write_text(json.dumps(record) + "\n")
    status, report = _verify(log, "--checkpoints", str(checkpoints), "--public-key", str(public))
    assert status == 1 and "invalid signature" in str(report["problem"])


async def test_a_checkpoint_from_another_key_is_refused(log: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, _ = keys
    other = tmp_path / "other.pub"
    main(["audit", "keygen", "--private-key", str(tmp_path / "other.pem"), "--public-key", str(other)])
    checkpoints = tmp_path / "checkpoints.jsonl"
    main(["audit", "checkpoint", "--key", str(private), "--log", str(log), "--checkpoints", str(checkpoints)])
    status, report = _verify(log, "--checkpoints", str(checkpoints), "--public-key", str(other))
    assert status == 1 and "not the configured" in str(report["problem"])


async def test_the_server_holding_only_the_public_key_refuses_a_truncated_log(
    tree: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    config_path = tree / "cedargate.toml"
    text = config_path.read_text().replace(
        '[audit]\npath = "audit.jsonl"\n',
        f'[audit]\npath = "audit.jsonl"\n\n[audit.checkpoints]\npath = "checkpoints.jsonl"\npublic_key = "{public}"\n',
    )
    config_path.write_text(text)
    config = load_config(config_path, environ={})
    runtime = build_runtime(config)
    try:
        await _calls(runtime, 3)
    finally:
        runtime.close()
    main(["--config", str(config_path), "audit", "checkpoint", "--key", str(private)])
    assert (
        _verify(config.audit.path, "--checkpoints", str(tree / "checkpoints.jsonl"), "--public-key", str(public))[0]
        == 0
    )
    lines = config.audit.path.read_text().splitlines()
    config.audit.path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(AuditWriteError, match="does not match its signed checkpoints"):
        build_runtime(config)


def test_keygen_refuses_to_overwrite_a_private_key(keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    assert main(["audit", "keygen", "--private-key", str(private), "--public-key", str(public)]) == 2
    assert "already exists" in capsys.readouterr().err


async def test_keygen_and_checkpoint_speak_json_for_scripts(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = tmp_path / "k/signer.pem", tmp_path / "k/audit.pub"
    assert main(["audit", "keygen", "--private-key", str(private), "--public-key", str(public), "--json"]) == 0
    key = json.loads(capsys.readouterr().out)
    assert key["private_key"] == str(private) and key["public_key"] == str(public) and len(key["key_id"]) == 16
    checkpoints = tmp_path / "checkpoints.jsonl"
    sign = [
        "audit",
        "checkpoint",
        "--key",
        str(private),
        "--log",
        str(log),
        "--checkpoints",
        str(checkpoints),
        "--json",
    ]
    assert main(sign) == 0
    [line] = capsys.readouterr().out.splitlines()
    signed = json.loads(line)
    assert signed["events"] == 4 and signed["key_id"] == key["key_id"] and signed["checkpoints"] == str(checkpoints)
    assert signed["head_hash"] == json.loads(log.read_text().splitlines()[-1])["hash"]
    assert main(sign) == 0
    assert capsys.readouterr().out == ""  # nothing new to sign: no line for a script to misread


def test_reading_a_long_log_reports_how_far_it_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    for n in range(2 * PROGRESS_EVERY_LINES + 10):
        log.append(EventRecord.of(sample_event(n)))
    log.close()
    seen: list[tuple[int, int]] = []
    report = verify_log(path, lambda done, total: seen.append((done, total)))
    assert report.ok and report.events == 2 * PROGRESS_EVERY_LINES + 10
    size = path.stat().st_size
    assert len(seen) == 2 and all(total == size for _, total in seen)
    assert 0 < seen[0][0] < seen[1][0] < size
    queried: list[tuple[int, int]] = []
    assert sum(1 for _ in read_events(path, lambda done, total: queried.append((done, total)))) == report.events
    assert queried == seen  # `audit query` and `audit export` read the same way


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_and_cleared_but_never_written_to_a_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_progress, "REDRAW_EVERY_S", 0.0)
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        with _progress.terminal_progress("verifying audit.jsonl", stream) as report:
            report(25, 100)
            report(50, 100)
    assert pipe.getvalue() == ""
    drawn = terminal.getvalue()
    assert "\rverifying audit.jsonl: 25%" in drawn and "\rverifying audit.jsonl: 50%" in drawn
    assert drawn.endswith("\r\x1b[K")  # the status line does not stay behind the command's own output


def _sign(log: Path, private: Path, checkpoints: Path) -> None:
    assert (
        main(["audit", "checkpoint", "--key", str(private), "--log", str(log), "--checkpoints", str(checkpoints)]) == 0
    )


def _log_of(path: Path, events: range) -> Path:
    with closing(JsonlAuditLog(path)) as log:
        for n in events:
            log.append(EventRecord.of(sample_event(n)))
    return path


def _checkpointed_config(tree: Path, public: Path) -> Path:
    config_path = tree / "cedargate.toml"
    text = config_path.read_text().replace(
        '[audit]\npath = "audit.jsonl"\n',
        f'[audit]\npath = "audit.jsonl"\n\n[audit.checkpoints]\npath = "checkpoints.jsonl"\npublic_key = "{public}"\n',
    )
    config_path.write_text(text)
    return config_path


@pytest.mark.parametrize("torn", [b'{"event_id":"e9","time":"2026-', b'{"event_id":"e9","tool":"\xe2\x82'])
async def test_a_server_killed_mid_write_restarts_on_its_log_with_checkpoints_configured(
    tree: Path, keys: tuple[Path, Path], torn: bytes
) -> None:
    private, public = keys
    config = load_config(_checkpointed_config(tree, public), environ={})
    runtime = build_runtime(config)
    try:
        await _calls(runtime, 2)
    finally:
        runtime.close()
    _sign(config.audit.path, private, tree / "checkpoints.jsonl")
    with open(config.audit.path, "ab") as dying:  # what SIGKILL in the middle of a write leaves (UTF-8 cut too)
        dying.write(torn)
    flags = ("--checkpoints", str(tree / "checkpoints.jsonl"), "--public-key", str(public))
    status, report = _verify(config.audit.path, *flags)
    assert status == 0 and report["checkpoints"] == 1 and report["torn_tail"] == 3
    runtime = build_runtime(config)  # the checkpoints check reads past the torn tail; the log then recovers it
    try:
        await _calls(runtime, 1)
    finally:
        runtime.close()
    status, report = _verify(config.audit.path, *flags)
    assert status == 0 and report["events"] == 3 and report["segments"] == 1 and report["checkpoints"] == 1


def test_a_checkpoint_after_a_recovered_torn_write_vouches_for_the_newest_event(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    path, checkpoints = tmp_path / "audit.jsonl", tmp_path / "checkpoints.jsonl"
    with closing(JsonlAuditLog(path)) as log:
        for n in (1, 2):
            log.append(EventRecord.of(sample_event(n)))
        with open(path, "ab") as dying:
            dying.write(b'{"event_id":"e3","time":"2026-')
        for n in (4, 5):  # the first append recovers: the torn line and a segment record are lines, not events
            log.append(EventRecord.of(sample_event(n)))
    _sign(path, private, checkpoints)
    [checkpoint] = [json.loads(line) for line in checkpoints.read_text().splitlines()]
    newest = json.loads(path.read_text().splitlines()[-1])
    assert checkpoint["events"] == 4 and checkpoint["event_id"] == "e5" and checkpoint["head_hash"] == newest["hash"]
    flags = ("--checkpoints", str(checkpoints), "--public-key", str(public))
    assert _verify(path, *flags)[0] == 0
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # the newest event cut off: the checkpoint must see it
    status, report = _verify(path, *flags)
    assert status == 1 and "vouches for 4 events but the log has 3" in str(report["problem"])
    assert report["event_id"] == "e5" and report["line"] is None


async def test_an_emptied_checkpoint_file_fails_verify_like_a_removed_one(
    log: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoints = tmp_path / "checkpoints.jsonl"
    _sign(log, private, checkpoints)
    checkpoints.write_bytes(b"")
    status, report = _verify(log, "--checkpoints", str(checkpoints), "--public-key", str(public))
    assert status == 1 and report["checkpoints"] == 0
    assert f"checkpoint file `{checkpoints}` holds no checkpoint" in str(report["problem"])
    assert "4 events" in str(report["problem"])


def test_an_empty_log_with_an_empty_checkpoint_file_verifies(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, public = keys
    (tmp_path / "audit.jsonl").write_bytes(b"")
    (tmp_path / "checkpoints.jsonl").write_bytes(b"")
    flags = ("--checkpoints", str(tmp_path / "checkpoints.jsonl"), "--public-key", str(public))
    status, report = _verify(tmp_path / "audit.jsonl", *flags)
    assert status == 0 and report["checkpoints"] == 0  # nothing logged yet, so nothing to vouch for


def test_a_rewritten_event_a_checkpoint_contradicts_is_named_by_line_and_event(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    private, public = keys
    path, checkpoints = _log_of(tmp_path / "audit.jsonl", range(1, 4)), tmp_path / "checkpoints.jsonl"
    _sign(path, private, checkpoints)
    path.unlink()
    _log_of(path, range(4, 7))  # a fresh chain of three other events: valid, but not the one signed
    status, report = _verify(path, "--checkpoints", str(checkpoints), "--public-key", str(public))
    assert status == 1 and "does not match event 3" in str(report["problem"])
    assert report["line"] == 3 and report["event_id"] == "e6"


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ('{"outcome":"denied",', "outcome"),  # the edit readers that take the first value would believe
        ('{"principal":{"agent":"x","agent":"a","mode":"autonomous","on_behalf_of":"u","team":"t"},', "agent"),
    ],
)
def test_a_line_with_a_key_written_twice_fails_verify_naming_the_line_and_the_key(
    tmp_path: Path, prefix: str, key: str
) -> None:
    path = _log_of(tmp_path / "audit.jsonl", range(1, 4))
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = prefix + lines[1][1:]  # the last value still wins for Python, so the hash still matches
    path.write_text("".join(lines))
    status, report = _verify(path)
    assert status == 1 and report["line"] == 2 and report["event_id"] == "e2"
    assert f"key `{key}` is written twice" in str(report["problem"])


def test_a_log_an_older_writer_formatted_otherwise_still_verifies(tmp_path: Path) -> None:
    path = _log_of(tmp_path / "audit.jsonl", range(1, 4))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r, indent=None) + "\n" for r in records))  # spaces, hash not last
    status, report = _verify(path)
    assert status == 0 and report["events"] == 3


def test_verify_json_on_a_missing_log_prints_the_problem_as_json(tmp_path: Path) -> None:
    status, report = _verify(tmp_path / "nowhere.jsonl")
    assert status == 2 and report["ok"] is False and "does not exist" in str(report["problem"])


def test_checkpoints_without_a_public_key_outside_a_project_name_the_missing_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _log_of(tmp_path / "audit.jsonl", range(1, 2))
    argv = ["audit", "verify", "--log", str(path), "--checkpoints", str(tmp_path / "cp.jsonl")]
    assert main(argv) == 2
    assert "pass --public-key" in capsys.readouterr().err


async def test_doctor_fails_a_log_its_checkpoints_contradict_as_serve_would_refuse_it(
    tree: Path, keys: tuple[Path, Path]
) -> None:
    from cedargate.doctor import Status, run_checks

    private, public = keys
    config = load_config(_checkpointed_config(tree, public), environ={})
    runtime = build_runtime(config)
    try:
        await _calls(runtime, 3)
    finally:
        runtime.close()
    _sign(config.audit.path, private, tree / "checkpoints.jsonl")
    assert [f.status for f in run_checks(config, environ={}) if f.check == "audit log"] == [Status.OK]
    lines = config.audit.path.read_bytes().splitlines(keepends=True)
    config.audit.path.write_bytes(b"".join(lines[:-1]))  # the last event cut away

    [finding] = [f for f in run_checks(config, environ={}) if f.check == "audit log"]

    assert finding.status is Status.FAIL and "does not match its signed checkpoints" in finding.detail
    with pytest.raises(AuditWriteError, match="does not match its signed checkpoints"):
        build_runtime(config)
