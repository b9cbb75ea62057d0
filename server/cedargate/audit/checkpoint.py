"""Signed checkpoints: the head of the hash chain, signed with Ed25519 at intervals.

The hash chain alone shows an edited, removed or reordered line, but not a tail cut off
cleanly: the shorter file is still a valid chain. A checkpoint records "after N events the
head hash was H", signed by a key the serving process does not hold (the signer is
``cedargate audit checkpoint``, run by an operator or a timer); the server and
``audit verify`` read only the public key. A log shorter than a checkpoint, or whose event
N no longer hashes to H, fails verification.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from cedargate.audit.canonical import canonical_json
from cedargate.audit.verify import verify_log
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
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Checkpoint.model_validate_json(line)
            except ValueError as exc:
                raise CedargateError(f"checkpoint file `{path}` line {number} is not a checkpoint") from exc


def sign_head(log: Path, checkpoints: Path, private_key: Ed25519PrivateKey) -> Checkpoint | None:
    """Sign the head of ``log`` and append the checkpoint; ``None`` when nothing new was logged.

    Refuses to sign a log whose chain does not verify: a checkpoint vouches for everything before it.
    """
    report = verify_log(log)
    if not report.ok:
        raise CedargateError(
            f"audit log `{log}` does not verify ({report.problem}, line {report.line}); not signing it"
        )
    latest = list(read_checkpoints(checkpoints))
    if report.events == 0 or (latest and latest[-1].events == report.events):
        return None
    head = _event_at(log, report.events)
    unsigned = Checkpoint(
        events=report.events,
        head_hash=head["hash"],
        event_id=head["event_id"],
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


def check_checkpoints(hashes: list[str], checkpoints: Path, public_key: Ed25519PublicKey) -> tuple[int, str | None]:
    """Check every checkpoint against the log's event hashes; returns (count, first problem or None)."""
    expected_key = key_id(public_key)
    count = 0
    previous = 0
    for number, checkpoint in enumerate(read_checkpoints(checkpoints), start=1):
        where = f"checkpoint {number} (event {checkpoint.events}, signed {checkpoint.time})"
        if checkpoint.key_id != expected_key:
            return count, f"{where} was signed by key `{checkpoint.key_id}`, not the configured `{expected_key}`"
        try:
            public_key.verify(base64.b64decode(checkpoint.signature), checkpoint.signed_bytes())
        except (InvalidSignature, ValueError):
            return count, f"{where} has an invalid signature: the checkpoint file was edited"
        if checkpoint.events < previous:
            return count, f"{where} goes backwards: the checkpoint file was reordered"
        if checkpoint.events > len(hashes):
            return count, (
                f"log truncated: {where} vouches for {checkpoint.events} events but the log has {len(hashes)}"
            )
        if hashes[checkpoint.events - 1] != checkpoint.head_hash:
            return count, f"{where} does not match event {checkpoint.events}: the log was rewritten"
        previous = checkpoint.events
        count += 1
    return count, None


def event_hashes(log: Path) -> list[str]:
    with open(log, encoding="utf-8") as handle:
        return [str(json.loads(line).get("hash")) for line in handle if line.strip()]


def require_consistent(log: Path, checkpoints: Path, public_key_path: Path) -> None:
    """At start-up: refuse to append to a log that its checkpoints show was truncated or rewritten."""
    if not log.is_file():
        hashes: list[str] = []
    else:
        try:
            hashes = event_hashes(log)
        except ValueError as exc:
            raise AuditWriteError(
                f"audit log `{log}` has a line that is not JSON; run `cedargate audit verify`"
            ) from exc
    _, problem = check_checkpoints(hashes, checkpoints, load_public_key(public_key_path))
    if problem is not None:
        raise AuditWriteError(
            f"audit log `{log}` does not match its signed checkpoints ({problem}); "
            "run `cedargate audit verify` and restore the log before serving"
        )


def _event_at(log: Path, number: int) -> dict[str, str]:
    with open(log, encoding="utf-8") as handle:
        for index, line in enumerate(handle, start=1):
            if index == number:
                record: dict[str, str] = json.loads(line)
                return record
    raise CedargateError(f"audit log `{log}` has no event {number}")  # pragma: no cover - verified just before
