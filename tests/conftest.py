"""Fixtures shared by the whole suite: test assets, the shared vectors, a real PostgreSQL, the CLI runner.

PostgreSQL: CI's machine runs one at 127.0.0.1:5432 (user postgres, trust auth). When none answers there (a fresh
laptop), a throwaway cluster is started from the Debian ``postgresql`` package in a temporary directory, as
pytest-postgresql does. Each test session creates its own databases and drops them afterwards. Under CI
(``CI=true``) a test that needs PostgreSQL never skips: if no server can be had, it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import IN_CI, VECTORS, require_tool

__all__ = ["require_tool"]  # older test modules import it from here


@pytest.fixture(scope="session")
def vectors() -> Path:
    """``tests/vectors`` (real signed artifacts from Dify and OCM; see tests/vectors/PROVENANCE.md)."""
    if not VECTORS.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS}") if IN_CI else pytest.skip("no tests/vectors")
    return VECTORS


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $SIGNERY_HOME for one test."""
    h = tmp_path / "signery-home"
    h.mkdir()
    monkeypatch.setenv("SIGNERY_HOME", str(h))
    return h


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


class _Postgres:
    def __init__(self, host: str, port: int, user: str) -> None:
        self.host, self.port, self.user = host, port, user

    def url(self, db: str, *, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{db}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        name = f"signery_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_throwaway_cluster(tmp: Path) -> tuple[_Postgres, Callable[[], None]]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise RuntimeError("no PostgreSQL server binaries (install the Debian 'postgresql' package)")
    bindir = Path(bins[-1]).parent
    data = tmp / "pgdata"
    env = dict(os.environ)
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root; use the postgres system user when we are root
        shutil.chown(tmp, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
        env=env,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(tmp / "pg.log"),
            "-o",
            f"-p {port} -h 127.0.0.1 -k {tmp}",
            "start",
        ],
        check=True,
        capture_output=True,
        env=env,
    )

    def stop() -> None:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, env=env
        )

    return _Postgres("127.0.0.1", port, "postgres"), stop


@pytest.fixture(scope="session")
def postgres() -> Iterator[_Postgres]:
    """A PostgreSQL server: CI's at 127.0.0.1:5432, or a throwaway cluster started for this session."""
    if _port_open("127.0.0.1", 5432):
        yield _Postgres("127.0.0.1", 5432, "postgres")
        return
    tmp = Path(tempfile.mkdtemp(prefix="signery-pg-"))
    try:
        server, stop = _start_throwaway_cluster(tmp)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL available: {exc}")
    try:
        deadline = time.monotonic() + 30
        while not _port_open(server.host, server.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield server
    finally:
        stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres: _Postgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (SQLAlchemy URL, psycopg 3 driver); dropped afterwards."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)
