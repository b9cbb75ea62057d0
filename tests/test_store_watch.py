"""The SQLite change token: the hold check skips its read only while no process has committed."""

from __future__ import annotations

import mmap
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cedargate.config import StoreConfig
from cedargate.errors import StoreError
from cedargate.holds import HoldKind, Holds
from cedargate.identity import Principal
from cedargate.risk import Risk
from cedargate.store import Store, open_store
from cedargate.store import watch as watch_module
from cedargate.store.watch import SqliteChangeWatch

AGENT = Principal(agent="codex-demo", team="storefront", on_behalf_of="alice", mode="autonomous", task="t")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    opened = open_store(StoreConfig(path=db))
    yield opened
    opened.close()


def test_the_token_holds_still_while_nothing_is_committed(store: Store) -> None:
    first = store.change_token()
    assert first is not None
    assert store.change_token() == first


def test_a_commit_by_another_process_changes_the_token(store: Store, db: Path) -> None:
    before = store.change_token()
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        'c.execute("INSERT INTO admin_actions (at, actor, action, subject, reason) '
        "VALUES ('2026-11-26 00:00:00', 'olga', 'note', 'x', 'y')\")\n"
        "c.commit()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True)
    assert store.change_token() != before


def test_a_replica_on_the_same_file_sees_a_revocation_on_its_next_check(db: Path, store: Store) -> None:
    holds = Holds(store)
    assert holds.refusal(AGENT, "dev", Risk.READ) is None  # the table is read and remembered
    other = open_store(StoreConfig(path=db))
    try:
        Holds(other).put(HoldKind.AGENT, "codex-demo", "olga", "token leaked")
        refusal = holds.refusal(AGENT, "dev", Risk.READ)
        assert refusal is not None and refusal[0] is HoldKind.AGENT
        Holds(other).lift(HoldKind.AGENT, "codex-demo", "olga", "rotated")
        assert holds.refusal(AGENT, "dev", Risk.READ) is None
    finally:
        other.close()


def test_a_freeze_written_with_plain_sqlite_reaches_the_check(db: Path, store: Store) -> None:
    holds = Holds(store)
    assert holds.refusal(AGENT, "prod", Risk.WRITE) is None
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO revocations (kind, subject, by_user, at, reason) "
            "VALUES ('environment', 'prod', 'olga', '2026-11-26 00:00:00', 'incident')"
        )
    refusal = holds.refusal(AGENT, "prod", Risk.WRITE)
    assert refusal is not None and refusal[0] is HoldKind.ENVIRONMENT
    assert holds.refusal(AGENT, "prod", Risk.READ) is None  # a frozen environment still runs reads


def test_a_database_file_that_is_gone_fails_the_check_closed(db: Path, store: Store) -> None:
    holds = Holds(store)
    assert holds.refusal(AGENT, "dev", Risk.READ) is None
    store.engine.dispose()
    db.unlink()
    db.mkdir()  # every new connection to the path fails
    assert store.change_token() is None
    with pytest.raises(StoreError, match="revocation check"):
        holds.refusal(AGENT, "dev", Risk.READ)


def test_in_wal_mode_every_commit_by_another_connection_changes_the_token_without_a_query(db: Path) -> None:
    open_store(StoreConfig(path=db)).close()  # the store's schema, in WAL mode
    watch = SqliteChangeWatch(db)
    writer = sqlite3.connect(db)
    try:
        seen = [watch.token()]
        assert watch.reads_wal_index
        for n in range(200):
            writer.execute(
                "INSERT INTO admin_actions (at, actor, action, subject, reason) "
                "VALUES ('2026-11-26 00:00:00', 'olga', 'note', ?, 'y')",
                (str(n),),
            )
            writer.commit()
            seen.append(watch.token())
            assert watch.token() == seen[-1]  # and stays while nothing more is committed
            if n % 50 == 49:
                writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL starts over: tokens stay new
    finally:
        writer.close()
        watch.close()
    assert None not in seen and len(set(seen)) == len(seen)


def test_outside_wal_mode_the_token_comes_from_a_query_and_still_sees_commits(db: Path) -> None:
    with sqlite3.connect(db) as setup:
        setup.execute("PRAGMA journal_mode=DELETE")
        setup.execute("CREATE TABLE notes (text TEXT)")
    watch = SqliteChangeWatch(db)
    try:
        before = watch.token()
        assert before is not None and not watch.reads_wal_index
        assert watch.token() == before
        with sqlite3.connect(db) as writer:
            writer.execute("INSERT INTO notes VALUES ('x')")
        assert watch.token() not in (None, before)
    finally:
        watch.close()


DMS_LOCK_BYTE = 128
"""The byte of the ``-shm`` file every open WAL connection holds a shared lock on (SQLite's "dead man switch")."""


_TRY_EXCLUSIVE = """\
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
    print("exclusive")
except OSError:
    print("held by another process")
"""


def _index_lock_from_another_process(db: Path) -> str:
    probe = [sys.executable, "-c", _TRY_EXCLUSIVE, f"{db}-shm", str(DMS_LOCK_BYTE)]
    return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()


def test_watching_keeps_sqlites_own_lock_on_the_shared_index(db: Path) -> None:
    """A process whose lock is gone looks absent: another would rebuild the index under it."""
    open_store(StoreConfig(path=db)).close()
    watch = SqliteChangeWatch(db)
    try:
        assert watch.token() is not None and watch.reads_wal_index
        seen = _index_lock_from_another_process(db)
    finally:
        watch.close()
    assert seen == "held by another process"


def test_closing_one_watch_keeps_the_lock_of_another_on_the_same_file(db: Path) -> None:
    open_store(StoreConfig(path=db)).close()
    first, second = SqliteChangeWatch(db), SqliteChangeWatch(db)
    try:
        assert first.token() is not None and second.token() is not None
        first.close()
        seen = _index_lock_from_another_process(db)
        assert second.token() is not None and second.reads_wal_index
    finally:
        first.close()
        second.close()
    assert seen == "held by another process"


def test_an_index_that_cannot_be_mapped_leaves_the_query_and_no_file_opened_per_check(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(StoreConfig(path=db)).close()

    def refuse(*args: object, **kwargs: object) -> mmap.mmap:
        raise ValueError("mmap length is greater than file size")

    monkeypatch.setattr(watch_module.mmap, "mmap", refuse)
    watch = SqliteChangeWatch(db)
    try:
        first = watch.token()
        opened = _descriptors_of(f"{db}-shm")
        again = [watch.token() for _ in range(5)]
        assert _descriptors_of(f"{db}-shm") == opened
        assert first is not None and again == [first] * 5 and not watch.reads_wal_index
        with sqlite3.connect(db) as writer:
            writer.execute(
                "INSERT INTO admin_actions (at, actor, action, subject, reason) "
                "VALUES ('2026-11-26 00:00:00', 'olga', 'note', 'x', 'y')"
            )
        assert watch.token() not in (None, first)
    finally:
        watch.close()


def _descriptors_of(path: str) -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd) == path
        except OSError:
            continue
    return count
