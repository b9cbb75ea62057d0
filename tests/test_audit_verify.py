"""`audit verify` on real trails: tampered, reordered and (with signed checkpoints) truncated logs fail."""

from __future__ import annotations

import io
import json
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
