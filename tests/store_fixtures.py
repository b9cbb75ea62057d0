"""A throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir) and store configs for both backends.

Tests that take ``store_config`` run once on SQLite and once on PostgreSQL. The PostgreSQL
runs skip, saying why, only when the server binaries are not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cedargate.config import StoreConfig

PG_USER = "cedargate"


def _pg_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PostgresCluster:
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


@dataclass(frozen=True)
class PostgresServer(PostgresCluster):
    """A cluster this process made and can stop and start again (the database-outage faults use it)."""

    bin_dir: Path
    base: Path
    prefix: tuple[str, ...]

    @property
    def data(self) -> Path:
        return self.base / "data"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args], check=check, capture_output=True
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._pg_ctl("-o", options, "-l", str(self.base / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop", check=False)


@contextmanager
def local_postgres() -> Iterator[PostgresServer]:
    """A fresh, running PostgreSQL cluster in a temp dir, removed on exit; skips when it cannot exist here."""
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    base = Path(tempfile.mkdtemp(prefix="cedargate-pg-"))
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` user exists to own the test cluster")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = ("runuser", "-u", "postgres", "--")
    server = PostgresServer(_free_port(), bin_dir, base, prefix)
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(server.data),
                "-U",
                PG_USER,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for this test session, owned by a non-root user when run as root."""
    with local_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    """A fresh, empty store on each backend."""
    if request.param == "sqlite":
        return StoreConfig(path=tmp_path / "state.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return StoreConfig(url=cluster.create_database())
