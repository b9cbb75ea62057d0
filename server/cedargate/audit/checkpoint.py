"""Signed checkpoints: the head of the hash chain, signed with Ed25519 at intervals.

The hash chain alone shows an edited, removed or reordered line, but not a tail cut off
cleanly: the shorter file is still a valid chain. A checkpoint records "after N events the
head hash was H", signed by a key the serving process does not hold (the signer is
``cedargate audit checkpoint``, run by an operator or a timer); the server and
``audit verify`` read only the public key. A log shorter than a checkpoint, or whose event
N no longer hashes to H, fails verification. N counts events only: the segment records and
torn lines a crash leaves are lines of the file but not events (``verify.chain_events``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from cedargate.audit.canonical import canonical_json
from cedargate.audit.verify import chain_events
from cedargate.errors import AuditWriteError, CedargateError


class Checkpoint(BaseModel):
    """One signed statement about the log: after ``events`` events the head hash was ``head_hash``."""

    model_config = ConfigDict(frozen=True)

    events: int
    head_hash: str
    event_id: str
    time: str
    key_id: str
    signature: str

    def signed_bytes(self) -> bytes:
        body = self.model_dump(exclude={"signature"})
        return canonical_json(body).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (PEM; the private file readable by its owner only); returns the key id.

    Refuses, writing nothing, when either file exists or both paths name one file: overwriting a
    key loses it (the private one for good; the public one that verifies old checkpoints).
    """
    if private_path.resolve() == public_path.resolve():
        raise CedargateError(
            f"`{private_path}` is named for both keys: give --private-key and --public-key different files"
        )
    for path in (private_path, public_path):
        if path.exists():
            raise CedargateError(f"`{path}` already exists: choose another path or move the old key aside")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_path, pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except CedargateError:
        private_path.unlink()  # half a pair is no use: leave nothing behind
        raise
    return key_id(public)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data``; never replaces a file (``O_EXCL``), even one made a moment ago."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise CedargateError(f"key file `{path}` cannot be created: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = _load(path, private=True)
    if not isinstance(key, Ed25519PrivateKey):
        raise CedargateError(f"`{path}` is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = _load(path, private=False)
    if not isinstance(key, Ed25519PublicKey):
        raise CedargateError(f"`{path}` is not an Ed25519 public key")
    return key


def _load(path: Path, *, private: bool) -> object:
    try:
        data = path.read_bytes()
        if private:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except OSError as exc:
        raise CedargateError(f"key file `{path}` cannot be read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CedargateError(f"key file `{path}` is not a PEM key: {exc}") from exc


def read_checkpoints(path: Path) -> Iterator[Checkpoint]:
    if not path.is_file():
        return
    with open(path, "rb") as handle:  # bytes: a line that is not UTF-8 is named like any other bad line
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Checkpoint.model_validate_json(line)
            except ValueError as exc:
                raise CedargateError(f"checkpoint file `{path}` line {number} is not a checkpoint") from exc


class CheckpointCheck(NamedTuple):
    """The checkpoints' verdict: how many held before the first problem, and the checkpoint it concerns.

    ``checkpoint`` is set only when its signature held (the log disagrees with it), so what it
    names can be trusted.
    """

    held: int
    problem: str | None = None
    checkpoint: Checkpoint | None = None


def sign_head(log: Path, checkpoints: Path, private_key: Ed25519PrivateKey) -> Checkpoint | None:
    """Sign the head of ``log`` and append the checkpoint; ``None`` when nothing new was logged.

    Refuses to sign a log whose chain does not verify: a checkpoint vouches for everything before it.
    The head is the last event (not the last line: a segment record is not an event).
    """
    report, events = chain_events(log)
    if not report.ok:
        raise CedargateError(
            f"audit log `{log}` does not verify ({report.problem}, line {report.line}); not signing it"
        )
    latest = list(read_checkpoints(checkpoints))
    if report.events == 0 or (latest and latest[-1].events == report.events):
        return None
    unsigned = Checkpoint(
        events=report.events,
        head_hash=events.hashes[-1],
        event_id=events.event_ids[-1],
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        key_id=key_id(private_key.public_key()),
        signature="",
    )
    signature = base64.b64encode(private_key.sign(unsigned.signed_bytes())).decode()
    checkpoint = unsigned.model_copy(update={"signature": signature})
    checkpoints.parent.mkdir(parents=True, exist_ok=True)
    with open(checkpoints, "a", encoding="utf-8") as handle:
        handle.write(checkpoint.model_dump_json() + "\n")
    return checkpoint


def check_checkpoints(hashes: list[str], checkpoints: Path, public_key: Ed25519PublicKey) -> CheckpointCheck:
    """Check every checkpoint against the log's event hashes (the N-th event at index N - 1)."""
    expected_key = key_id(public_key)
    count = 0
    previous = 0
    for number, checkpoint in enumerate(read_checkpoints(checkpoints), start=1):
        where = f"checkpoint {number} (event {checkpoint.events}, signed {checkpoint.time})"
        if checkpoint.key_id != expected_key:
            return CheckpointCheck(
                count, f"{where} was signed by key `{checkpoint.key_id}`, not the configured `{expected_key}`"
            )
        try:
            public_key.verify(base64.b64decode(checkpoint.signature), checkpoint.signed_bytes())
        except (InvalidSignature, ValueError):
            return CheckpointCheck(count, f"{where} has an invalid signature: the checkpoint file was edited")
        if checkpoint.events < previous:
            return CheckpointCheck(count, f"{where} goes backwards: the checkpoint file was reordered")
        if checkpoint.events > len(hashes):
            truncated = f"log truncated: {where} vouches for {checkpoint.events} events but the log has {len(hashes)}"
            return CheckpointCheck(count, truncated, checkpoint)
        if hashes[checkpoint.events - 1] != checkpoint.head_hash:
            rewritten = f"{where} does not match event {checkpoint.events}: the log was rewritten"
            return CheckpointCheck(count, rewritten, checkpoint)
        previous = checkpoint.events
        count += 1
    return CheckpointCheck(count)


def require_consistent(log: Path, checkpoints: Path, public_key_path: Path) -> None:
    """At start-up: refuse to append to a log that does not verify or that its checkpoints show was cut or rewritten.

    Runs before the log is opened, so nothing is appended to such a log. A torn last line is a
    crash, not a contradiction: the events before it are checked, and opening the log then
    recovers the tail into a segment record (``segments.py``), as it does without checkpoints.
    """
    hashes: list[str] = []
    if log.is_file():
        report, events = chain_events(log)
        if not report.ok:
            raise AuditWriteError(
                f"audit log `{log}` does not verify ({report.problem}, line {report.line}); "
                f"run `cedargate audit verify --log {log}` and restore the log before serving"
            )
        hashes = events.hashes
    problem = check_checkpoints(hashes, checkpoints, load_public_key(public_key_path)).problem
    if problem is not None:
        raise AuditWriteError(
            f"audit log `{log}` does not match its signed checkpoints ({problem}); "
            "run `cedargate audit verify` and restore the log before serving"
        )
