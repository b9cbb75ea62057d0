"""Kept git readers: reused across calls, yet never behind the repository they read."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from cedargate.errors import HandlerError
from cedargate.git import ObjectReader
from cedargate.git_readers import ObjectReaderPool


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env).stdout.decode()


def _commit(repo: Path, name: str, content: str) -> str:
    (repo / name).write_text(content)
    _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", f"write {name}")
    return _git(repo, "rev-parse", "HEAD").strip()


def _new_repo(path: Path, content: str) -> str:
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    return _commit(path, "README.md", content)


def _content(pool: ObjectReaderPool, repo: Path, name: str) -> bytes:
    with pool.reader(repo) as objects:
        found = objects.info(name)
        assert found is not None, f"{name} names no object"
        return objects.contents(found.oid)


def _commit_named(objects: ObjectReader, name: str) -> str | None:
    found = objects.info(f"{name}^{{commit}}")
    return None if found is None else found.oid


def _pid(reader: ObjectReader) -> int:
    return reader._process.pid


@pytest.fixture
def pool() -> Iterator[ObjectReaderPool]:
    readers = ObjectReaderPool(keep_idle=2)
    yield readers
    readers.close()


def test_a_kept_reader_is_reused_and_sees_later_commits_and_ref_moves(tmp_path: Path, pool: ObjectReaderPool) -> None:
    repo = tmp_path / "r"
    first = _new_repo(repo, "one")
    with pool.reader(repo) as objects:
        pid = _pid(objects)
    assert _content(pool, repo, "HEAD:README.md") == b"one"

    second = _commit(repo, "README.md", "two")  # a loose ref moves, a loose object appears
    assert _content(pool, repo, "main:README.md") == b"two"
    _git(repo, "branch", "feature", first)
    _git(repo, "gc", "-q", "--prune=now")  # refs packed, objects moved into a pack
    third = _commit(repo, "README.md", "three")
    _git(repo, "update-ref", "refs/heads/feature", second)
    _git(repo, "pack-refs", "--all")
    with pool.reader(repo) as objects:
        assert _pid(objects) == pid  # the same git process answered every question
        assert _commit_named(objects, "main") == third
        assert _commit_named(objects, "feature") == second
        assert _commit_named(objects, "no-such-branch") is None


def test_a_repository_replaced_at_the_same_path_is_read_afresh(tmp_path: Path, pool: ObjectReaderPool) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "old")
    assert _content(pool, repo, "HEAD:README.md") == b"old"
    repo.rename(tmp_path / "r.old")  # the old repository still exists, just elsewhere
    _new_repo(repo, "new")
    assert _content(pool, repo, "HEAD:README.md") == b"new"
    shutil.rmtree(tmp_path / "r.old")


def test_a_reader_that_died_or_lost_its_place_is_not_reused(tmp_path: Path, pool: ObjectReaderPool) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "x")
    with pool.reader(repo) as objects:
        killed = _pid(objects)
        objects._process.kill()
        objects._process.wait()
        assert not objects.usable
    with pool.reader(repo) as objects:
        assert _pid(objects) != killed
        assert objects.info("HEAD") is not None
        objects._broken = True  # as after an answer that was not read whole
        lost = _pid(objects)
    with pool.reader(repo) as objects:
        assert _pid(objects) != lost


def test_idle_readers_are_bounded_and_stop_on_close(tmp_path: Path, pool: ObjectReaderPool) -> None:
    readers = []
    for n in range(4):
        repo = tmp_path / f"r{n}"
        _new_repo(repo, str(n))
        with pool.reader(repo) as objects:
            readers.append(objects)
    assert [r.usable for r in readers] == [False, False, True, True]  # the least recently used went first
    pool.close()
    assert not any(r.usable for r in readers)


def test_concurrent_calls_get_their_own_reader(tmp_path: Path, pool: ObjectReaderPool) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "x")
    with pool.reader(repo) as outer, pool.reader(repo) as inner:
        assert _pid(outer) != _pid(inner)
        assert outer.info("HEAD") == inner.info("HEAD")


def test_a_reader_on_no_repository_says_what_git_said(tmp_path: Path, pool: ObjectReaderPool) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(HandlerError, match="not a git repository"), pool.reader(tmp_path / "plain") as objects:
        objects.info("HEAD")


def test_a_reader_lent_out_too_long_is_stopped_and_not_reused(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "x")
    pool = ObjectReaderPool(timeout_s=0.2, tick_s=0.05)
    try:
        with pool.reader(repo) as objects:
            stuck = _pid(objects)
            deadline = time.monotonic() + 10
            while objects.usable and time.monotonic() < deadline:  # as if git hung on a stuck disk
                time.sleep(0.05)
            assert not objects.usable
        with pool.reader(repo) as objects:
            fresh = _pid(objects)
            assert fresh != stuck
            assert objects.info("HEAD") is not None
        time.sleep(0.3)  # past that use's deadline, but it was given back in time
        with pool.reader(repo) as objects:
            assert _pid(objects) == fresh
            assert objects.info("HEAD") is not None
    finally:
        pool.close()


@pytest.mark.parametrize("name", ["HEAD\nHEAD", "HEAD\rx", "HEAD:README.md\x00other"])
def test_a_name_git_would_split_or_cut_short_is_refused_before_it_is_sent(
    tmp_path: Path, pool: ObjectReaderPool, name: str
) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "x")
    with pool.reader(repo) as objects:
        with pytest.raises(HandlerError, match="line break or NUL"):
            objects.info(name)
        assert objects.usable and objects.info("HEAD:README.md") is not None


def test_the_readers_of_a_burst_of_concurrent_reads_are_kept_for_the_next_one(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "x")
    pool = ObjectReaderPool()
    try:
        rounds = []
        for _ in range(2):
            with ExitStack() as lent:  # sixteen reads at once, as sixteen sessions would make
                readers = [lent.enter_context(pool.reader(repo)) for _ in range(16)]
                rounds.append({_pid(objects) for objects in readers})
        assert len(rounds[0]) == 16 and rounds[1] == rounds[0]  # no git started for the second burst
    finally:
        pool.close()


def test_a_reader_unused_for_a_while_is_stopped(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    _new_repo(repo, "x")
    pool = ObjectReaderPool(tick_s=0.05, idle_s=1.0)
    try:
        with pool.reader(repo) as first, pool.reader(repo) as second:
            processes = [first._process, second._process]
        time.sleep(0.2)
        assert all(process.poll() is None for process in processes)  # kept while recently used
        deadline = time.monotonic() + 10
        while any(process.poll() is None for process in processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(process.poll() is not None for process in processes)
        with pool.reader(repo) as objects:  # a new reader answers
            assert objects._process not in processes and objects.info("HEAD") is not None
    finally:
        pool.close()
