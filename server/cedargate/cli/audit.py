"""``cedargate audit``: checking, reading, querying and exporting the audit trail."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cedargate.cli._common import (
    config_from,
    group,
    non_negative_int,
    positive_int,
    positive_seconds,
    writable_file,
    write_output,
)
from cedargate.cli._progress import terminal_progress
from cedargate.decision import Effect
from cedargate.errors import CedargateError

if TYPE_CHECKING:
    from cedargate.audit.verify_table import TableReport
    from cedargate.config import Config

OUTCOMES = (
    "succeeded",
    "denied",
    "approval_required",
    "over_budget",
    "revoked",
    "frozen",
    "invalid_arguments",
    "unknown_tool",
    "failed",
)
"""``audit.event.Outcome``'s values: importing it would load Cedar for every command (a test keeps them equal)."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = group(commands, "audit", "audit trail tools")
    verify = audit.add_parser(
        "verify",
        help="check the hash chain of an audit log",
        description="Recompute the hash chain; name the first event altered, removed or reordered.",
    )
    verify.add_argument("--log", type=Path, help="audit log file (default: the configured one)")
    verify.add_argument("--checkpoints", type=Path, help="signed checkpoints file (default: the configured one)")
    verify.add_argument("--public-key", type=Path, help="Ed25519 public key (PEM) that signed the checkpoints")
    verify.add_argument(
        "--database",
        action="store_true",
        help="also check the `database` sink's table against the log (rows altered or added are named)",
    )
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(run=run_verify)
    keygen = audit.add_parser(
        "keygen",
        help="create an Ed25519 key pair for signing checkpoints",
        description="Create an Ed25519 key pair: the private key for the signer, the public key for the server.",
    )
    keygen.add_argument("--private-key", type=Path, required=True, help="where to write the private key (mode 0600)")
    keygen.add_argument("--public-key", type=Path, required=True, help="where to write the public key")
    keygen.add_argument("--json", action="store_true", help="print the key id and both paths as one JSON object")
    keygen.set_defaults(run=run_keygen)
    checkpoint = audit.add_parser(
        "checkpoint",
        help="sign the head of the hash chain",
        description="Sign the head of the audit log's hash chain and append the checkpoint; with --every, keep "
        "signing at that interval. Run it where the private key lives, not in the serving process.",
    )
    checkpoint.add_argument("--key", type=Path, required=True, help="the Ed25519 private key (PEM)")
    checkpoint.add_argument("--log", type=Path, help="audit log file (default: the configured one)")
    checkpoint.add_argument("--checkpoints", type=Path, help="checkpoints file (default: the configured one)")
    checkpoint.add_argument("--every", type=positive_seconds, metavar="SECONDS", help="keep signing every SECONDS")
    checkpoint.add_argument(
        "--json", action="store_true", help="print each checkpoint signed as one JSON line (nothing when none was)"
    )
    checkpoint.set_defaults(run=run_checkpoint)
    tail = audit.add_parser(
        "tail",
        help="print the last events",
        description="Print the last events of the audit log (optionally filtered).",
    )
    tail.add_argument("-n", "--lines", type=non_negative_int, default=10, help="how many events (default: 10)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing events as they are appended")
    _filter_arguments(tail)
    tail.set_defaults(run=run_tail)
    query = audit.add_parser(
        "query",
        help="find events by agent, user, team, tool, decision, environment, changed path, time or task",
        description="Print the events that match every filter given, in log order.",
    )
    query.add_argument("--limit", type=positive_int, help="only the last LIMIT matches")
    query.add_argument(
        "--source",
        choices=["file", "database"],
        default="file",
        help="read the JSONL log (default) or the `audit_events` table the `database` sink fills",
    )
    _filter_arguments(query)
    query.set_defaults(run=run_query)
    export = audit.add_parser(
        "export",
        help="export events in a standard format (OCSF)",
        description="Export events as OCSF API Activity (class 6003) JSON lines, Cedar's policies in "
        "actor.authorizations.",
    )
    export.add_argument("--format", choices=["ocsf"], default="ocsf", help="output format (default: ocsf)")
    export.add_argument("--output", type=Path, help="write to this file instead of standard output")
    _filter_arguments(export, with_json=False)
    export.set_defaults(run=run_export)


def _checkpoint_paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The checkpoints file and public key: from the flags, else from the config when it names them."""
    configured = None
    if args.checkpoints is None or args.public_key is None:
        try:
            configured = config_from(args).audit.checkpoints
        except CedargateError as exc:
            if args.public_key is not None or args.checkpoints is not None:
                missing = "--public-key" if args.public_key is None else "--checkpoints"
                raise CedargateError(
                    f"checking checkpoints needs both --checkpoints and --public-key: pass {missing} "
                    f"(no config names `[audit.checkpoints]`: {exc})"
                ) from exc
    checkpoints = args.checkpoints or (configured.path if configured else None)
    public_key = args.public_key or (configured.public_key if configured else None)
    if (checkpoints is None) != (public_key is None):
        raise CedargateError(
            "checking checkpoints needs both --checkpoints and --public-key (or `[audit.checkpoints]`)"
        )
    return checkpoints, public_key


def _require_database_sink(config: Config) -> None:
    """Fail unless the `database` sink fills ``audit_events``: an empty table would pass for a clean one."""
    if not any(sink.kind == "database" for sink in config.audit.sinks):
        raise CedargateError(
            'no `[[audit.sinks]]` with `kind = "database"` is configured, so no table holds the trail: '
            "add one to the config, or drop --database / `--source database` to read the log file"
        )


def run_keygen(args: argparse.Namespace) -> int:
    from cedargate.audit.checkpoint import generate_keypair

    kid = generate_keypair(args.private_key, args.public_key)
    if args.json:
        print(json.dumps({"key_id": kid, "private_key": str(args.private_key), "public_key": str(args.public_key)}))
    else:
        print(f"key {kid}: private key {args.private_key} (keep it with the signer), public key {args.public_key}")
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from cedargate.audit.checkpoint import load_private_key, sign_head

    key = load_private_key(args.key)
    log = args.log
    checkpoints = args.checkpoints
    if log is None or checkpoints is None:
        config = config_from(args)
        log = log or config.audit.path
        if checkpoints is None and config.audit.checkpoints is None:
            raise CedargateError("no checkpoints file: pass --checkpoints PATH or configure `[audit.checkpoints]`")
        checkpoints = checkpoints or config.audit.checkpoints.path  # type: ignore[union-attr]
    writable_file(checkpoints, "--checkpoints", create_folder=True)
    while True:
        signed = sign_head(log, checkpoints, key)
        if signed is not None and args.json:
            print(json.dumps({**signed.model_dump(mode="json"), "checkpoints": str(checkpoints)}), flush=True)
        elif signed is not None:
            print(f"signed event {signed.events} ({signed.head_hash[:16]}) into {checkpoints}", flush=True)
        elif args.every is None:
            print("nothing new to sign", file=sys.stderr)
        if args.every is None:
            return 0
        time.sleep(args.every)


def _filter_arguments(parser: argparse.ArgumentParser, *, with_json: bool = True) -> None:
    parser.add_argument("--log", type=Path, help="audit log file (default: the configured one)")
    for name, what in (
        ("agent", "the calling agent"),
        ("user", "the human the agent acted for"),
        ("team", "the agent's team"),
        ("tool", "tool name"),
        ("environment", "the resource's environment"),
        ("task", "task id"),
        ("session", "session id"),
    ):
        parser.add_argument(f"--{name}", help=f"only events of {what}")
    parser.add_argument(
        "--changed-path",
        metavar="PATH",
        help="only calls that change this repository path (ending in `/`: any path in that folder)",
    )
    parser.add_argument("--path-class", metavar="CLASS", help="only calls that change a path of this path class")
    parser.add_argument("--decision", choices=[e.value for e in Effect], help="only events Cedar decided so")
    parser.add_argument("--outcome", choices=OUTCOMES, help="only events with this outcome")
    parser.add_argument("--since", type=_when, help="only events at or after this ISO time (e.g. 2026-01-31T09:00Z)")
    parser.add_argument("--until", type=_when, help="only events before this ISO time")
    if with_json:
        parser.add_argument("--json", action="store_true", help="print one JSON event per line")


def _when(text: str) -> datetime:
    """An ISO time with its zone; a date with ``Z`` (``2026-01-31Z``) is that day's start in UTC."""
    try:
        if len(text) == 11 and text.endswith("Z"):  # a date alone carries no offset for Python to read
            return datetime.combine(date.fromisoformat(text[:-1]), datetime.min.time(), tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"`{text}` is not an ISO date or time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"`{text}` has no time zone: add `Z` or an offset (`2026-01-31Z`, `2026-01-31T09:00+02:00`)"
        )
    return value


def _where(args: argparse.Namespace) -> Any:
    from cedargate.audit.query import AuditFilter

    if args.path_class is not None:
        _note_unknown_path_class(args)
    return AuditFilter(**{name: getattr(args, name) for name in AuditFilter.model_fields})


def _note_unknown_path_class(args: argparse.Namespace) -> None:
    """Say on standard error when ``--path-class`` names no class of the config (a typo finds nothing)."""
    try:
        defined = config_from(args).defined_path_classes
    except CedargateError:
        return  # reading a log without its config: nothing to compare with
    if args.path_class not in defined:
        known = ", ".join(f"`{name}`" for name in sorted(defined)) or "none"
        print(
            f"note: `{args.path_class}` is not a path class of the config (defined: {known}); only events "
            "recorded while a config defined it can match",
            file=sys.stderr,
        )


def _log_path(args: argparse.Namespace) -> Path:
    """The log named by --log, else the configured one; a folder is named as one, not as a missing log."""
    path: Path = args.log or config_from(args).audit.path
    if path.is_dir():
        flag = "--log" if args.log is not None else "`[audit] path` in the config"
        raise CedargateError(
            f"audit log `{path}` is a folder: name the log file with {flag} (e.g. `{path / 'audit.jsonl'}`)"
        )
    return path


def _not_written_yet(args: argparse.Namespace, path: Path) -> bool:
    """Whether the configured log does not exist yet, said on standard error: a fresh project has no events.

    Only for the configured path: a --log that names no file is a mistake ``read_events`` names.
    """
    if args.log is not None or path.exists():
        return False
    print(f"no events yet: `cedargate serve` creates the log `{path}` when it starts", file=sys.stderr, flush=True)
    return True


def _print(events: list[dict[str, Any]], as_json: bool) -> None:
    from cedargate.audit.query import one_line

    for event in events:
        print(json.dumps(event, ensure_ascii=False) if as_json else one_line(event), flush=True)


def _query_database(args: argparse.Namespace) -> list[dict[str, Any]]:
    from cedargate.audit.database_query import query_table
    from cedargate.store import open_store

    if args.log is not None:
        raise CedargateError("--log names a file: drop it with `--source database` (the `[store]` database is read)")
    config = config_from(args)
    _require_database_sink(config)
    store = open_store(config.store, migrate=False)
    try:
        return query_table(store, _where(args), limit=args.limit)
    finally:
        store.close()


_FOLLOW_CHECK_BYTES: Final = 256
"""Bytes before the offset that must still be there for a followed file to be the same file."""


def run_tail(args: argparse.Namespace) -> int:
    from cedargate.audit.query import query, read_events

    path, where = _log_path(args), _where(args)
    if path.exists() or not (args.follow or args.log is None):  # a --log naming nothing: read_events says so
        _print(query(read_events(path), where, limit=args.lines), args.json)
        followed = _Followed.at(path, path.stat().st_size)
    else:
        _not_written_yet(args, path)
        if not args.follow:
            return 0
        followed = _Followed.at(_appeared(path), 0)  # every event in it is new
    while args.follow:
        time.sleep(1.0)
        if not path.exists():  # moved aside and not created again yet: wait for the new file
            continue
        if followed.cut_or_replaced(path):
            print(
                f"audit log `{path}` was truncated or replaced (rotated?): reading it again from its start",
                file=sys.stderr,
            )
            followed = _Followed.at(path, 0)
        followed = _Followed.at(path, _print_appended(path, followed.offset, where, args.json))
    return 0


def _appeared(path: Path) -> Path:
    """``path`` once it exists (a server creates it when it starts), checked every second as following does."""
    print(f"waiting for `{path}` to appear (Ctrl-C to stop)", file=sys.stderr, flush=True)
    while not path.exists():
        time.sleep(1.0)
    return path


@dataclass(frozen=True)
class _Followed:
    """Where following stopped: the offset, the file (inode) and the bytes just before the offset.

    Rotation with ``copytruncate`` keeps the inode and may grow the file past the offset again
    within one poll: only the bytes before the offset show it is no longer the same file (an
    audit line ends in its own hash, so a new line there never reads the same).
    """

    offset: int
    inode: int
    before: bytes

    @classmethod
    def at(cls, path: Path, offset: int) -> _Followed:
        with open(path, "rb") as handle:
            start = max(0, offset - _FOLLOW_CHECK_BYTES)
            before = os.pread(handle.fileno(), offset - start, start)
            return cls(offset, os.fstat(handle.fileno()).st_ino, before)

    def cut_or_replaced(self, path: Path) -> bool:
        return _Followed.at(path, self.offset) != self


def _print_appended(path: Path, offset: int, where: Any, as_json: bool) -> int:
    """Print the whole lines appended since ``offset``; returns the offset after the last one."""
    from cedargate.audit.query import parse_event

    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next round
    events, start = [], offset
    for line in complete.splitlines(keepends=True):
        events.append(parse_event(line, path, f"line at byte {start}"))
        start += len(line)
    _print([e for e in events if e is not None and where.matches(e)], as_json)
    return offset + len(complete)


def run_query(args: argparse.Namespace) -> int:
    from cedargate.audit.query import query, read_events

    if args.source == "database":
        matches = _query_database(args)
    elif _not_written_yet(args, path := _log_path(args)):
        matches = []
    else:
        with terminal_progress(f"reading {path}") as progress:
            matches = query(read_events(path, progress), _where(args), limit=args.limit)
    _print(matches, args.json)
    if not args.json:
        print(f"{len(matches)} matching events", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from cedargate.audit.ocsf import to_ocsf
    from cedargate.audit.query import query, read_events

    if args.output is not None:
        writable_file(args.output, "--output")  # before reading what may be a large log
    path = _log_path(args)
    if _not_written_yet(args, path):
        records = []
    else:
        with terminal_progress(f"reading {path}") as progress:
            records = [to_ocsf(e) for e in query(read_events(path, progress), _where(args))]
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    write_output(lines, args.output, f"wrote {len(records)} OCSF events to {args.output}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from cedargate.audit.verify import VerifyReport, chain_events, verify_checkpoints, verify_log

    if args.database:
        _require_database_sink(config_from(args))
    path = args.log or config_from(args).audit.path
    checkpoints, public_key = _checkpoint_paths(args)
    if not path.is_file():
        if path.is_dir():
            missing = f"audit log `{path}` is a folder: pass --log with the log file (e.g. `{path / 'audit.jsonl'}`)"
        else:
            missing = f"audit log `{path}` does not exist: pass --log PATH or check `[audit] path` in the config"
        if not args.json:
            raise CedargateError(missing)
        report = VerifyReport(path=str(path), ok=False, events=0, problem=missing)
        print(json.dumps({**report.model_dump(), "database": None}, indent=2))
        return 2
    with terminal_progress(f"verifying {path}") as progress:
        if public_key is None and not args.database:
            report, events = verify_log(path, progress), None
        else:  # one walk: checkpoints and table rows are checked against the events it verified
            report, events = chain_events(path, progress)
    if report.ok and events is not None and public_key is not None and checkpoints is not None:
        report = verify_checkpoints(report, events, checkpoints, public_key)
    table = _verify_table(args, events.by_hash()) if args.database and report.ok and events is not None else None
    if args.json:
        print(json.dumps({**report.model_dump(), "database": table.model_dump() if table else None}, indent=2))
    elif report.ok:
        notes = f", {report.checkpoints} signed checkpoints hold" if report.checkpoints is not None else ""
        if report.segments:
            notes += f", {report.segments} segment(s) after torn writes"
        if report.torn_tail is not None:
            notes += f"; line {report.torn_tail} is a torn write (a new segment starts when the server restarts)"
        print(f"ok: {report.events} events, chain intact{notes} ({report.path})")
    else:
        where = f" at line {report.line}" if report.line is not None else ""
        where += f" (event {report.event_id or 'unknown'})" if report.line is not None or report.event_id else ""
        print(f"FAILED{where}: {report.problem} ({report.path})")
    if table is not None and not args.json:
        _print_table_report(table)
    return 0 if report.ok and (table is None or table.ok) else 1


def _print_table_report(table: TableReport) -> None:
    if not table.ok:
        print(f"FAILED at row of event {table.event_id}: {table.problem} (`audit_events`)")
        return
    missing = ""
    if table.not_in_table:
        missing = (
            f"; {table.not_in_table} events of the log are not in the table: not delivered yet (the sink "
            "is asynchronous), lost while the store was down, or deleted from the table"
        )
    print(f"ok: {table.rows} rows of `audit_events` match the log{missing}")


def _verify_table(args: argparse.Namespace, primary: dict[str, str]) -> TableReport:
    from cedargate.audit.verify_table import verify_table
    from cedargate.store import open_store

    store = open_store(config_from(args).store, migrate=False)
    try:
        return verify_table(store, primary)
    finally:
        store.close()
