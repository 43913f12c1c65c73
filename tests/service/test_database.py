"""The one database set-up (``signery._internal.db``) as both servers use it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from signery._internal.db import Migrations, make_engine, normalise_url, redact, sqlite_file
from signery.errors import ConfigError, EnvironmentFailure
from signery.registry.db import MIGRATIONS as REGISTRY_MIGRATIONS
from signery.registry.db import open_engine
from signery.registry.settings import RegistrySettings
from signery.service.settings import MasterKey, Settings
from signery.service.storage import MIGRATIONS as SERVICE_MIGRATIONS
from signery.service.storage import Database, KeyRow


def _pragmas(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        names = ("journal_mode", "synchronous", "foreign_keys")
        return {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in names}


def test_both_servers_open_sqlite_the_same_way(tmp_path: Path) -> None:
    service = Database(f"sqlite:///{tmp_path / 'service.db'}")
    registry = open_engine(RegistrySettings(data_dir=tmp_path / "registry"))
    try:
        # WAL, every commit on disk before it returns (synchronous=FULL is 2), foreign keys enforced
        expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
        assert _pragmas(service.engine) == expected
        assert _pragmas(registry) == expected
        assert service._read_engine is not None and _pragmas(service._read_engine) == expected
        with registry.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        service.dispose()
        registry.dispose()


def test_urls_are_normalised_and_refused_alike(tmp_path: Path) -> None:
    assert normalise_url("postgres://u@h/db") == normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    assert redact("postgresql+psycopg://user:secret@host/db") == "postgresql+psycopg://user@host/db"
    assert sqlite_file("sqlite:////srv/a.db") == Path("/srv/a.db") and sqlite_file("postgresql+psycopg://h/d") is None
    master = MasterKey(b"k" * 32)
    for bad in ("mysql://user:secret@h/db", "sqlite://relative"):
        with pytest.raises(ConfigError, match="database URL") as service:
            Settings(database_url=bad, master_key=master)
        with pytest.raises(ConfigError, match="database URL") as registry:
            RegistrySettings(data_dir=tmp_path, database_url=bad)
        assert "secret" not in str(service.value.subject) + str(registry.value.subject)
    with pytest.raises(ConfigError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("migrations", [SERVICE_MIGRATIONS, REGISTRY_MIGRATIONS], ids=["service", "registry"])
def test_migrations_upgrade_to_the_shipped_head(
    tmp_path: Path, backend: str, migrations: Migrations, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    try:
        display = redact(url)
        assert migrations.current(engine, display=display) is None
        head = migrations.head()
        assert migrations.upgrade(engine, display=display) == head
        assert migrations.current(engine, display=display) == head
        assert migrations.upgrade(engine, display=display) == head  # again: nothing to do
    finally:
        engine.dispose()


def test_the_registry_opens_its_database_at_the_head(tmp_path: Path, postgres_url: str) -> None:
    engine = open_engine(RegistrySettings(data_dir=tmp_path, database_url=postgres_url))
    try:
        assert REGISTRY_MIGRATIONS.current(engine, display="db") == REGISTRY_MIGRATIONS.head()
    finally:
        engine.dispose()


def test_failures_name_the_database_but_never_its_password_or_rows(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    db = Database(f"postgresql://signery:hunter2@127.0.0.1:{port}/nowhere")
    try:
        with pytest.raises(EnvironmentFailure) as unreachable:
            db.current_revision()
        assert unreachable.value.subject == f"postgresql+psycopg://signery@127.0.0.1:{port}/nowhere"
        assert "OperationalError" in unreachable.value.message and "hunter2" not in unreachable.value.message
    finally:
        db.dispose()
    db = Database(f"sqlite:///{tmp_path / 'svc.db'}")
    db.migrate()
    row = {"type": "ed25519", "created_at": "now", "latest_version": 1, "params": '{"secret": "row-data-4711"}'}
    try:
        with db.session() as session:
            session.add(KeyRow(name="k", **row))
        with pytest.raises(EnvironmentFailure) as duplicate, db.session() as session:
            session.add(KeyRow(name="k", **row))
        assert "IntegrityError" in duplicate.value.message and "row-data-4711" not in duplicate.value.message
        with db.read_session() as session:
            assert session.execute(text("SELECT count(*) FROM keys")).scalar() == 1
    finally:
        db.dispose()
