"""Tables and the database handle (SQLAlchemy 2; SQLite embedded, PostgreSQL via psycopg 3).

The schema is created and upgraded only by the Alembic migrations shipped in ``signery/service/migrations``
(:meth:`Database.migrate`); the server refuses to run on a database that is not at the current revision.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ..errors import ConfigError, EnvironmentFailure
from .settings import normalise_database_url

SQLITE_BUSY_TIMEOUT_MS = 30_000  # two processes on one SQLite file wait for each other rather than fail
MIGRATIONS = "signery.service:migrations"


class Base(DeclarativeBase):
    pass


class KeyRow(Base):
    __tablename__ = "keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(40))
    latest_version: Mapped[int] = mapped_column(Integer)
    min_sign_version: Mapped[int] = mapped_column(Integer, default=1)
    min_verify_version: Mapped[int] = mapped_column(Integer, default=1)
    deletion_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON: X.509 template and subject, OpenPGP uid


class KeyVersionRow(Base):
    __tablename__ = "key_versions"

    name: Mapped[str] = mapped_column(String(64), ForeignKey("keys.name", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(128))
    algorithm: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(40))
    public_key_pem: Mapped[str] = mapped_column(Text)
    certificate_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    openpgp_certificate: Mapped[str | None] = mapped_column(Text, nullable=True)
    openpgp_created: Mapped[int | None] = mapped_column(Integer, nullable=True)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public half of the token, for lookup
    name: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(Text)  # JSON list
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


class AuditRow(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(40))
    caller: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    key_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    digest: Mapped[str | None] = mapped_column(String(160), nullable=True)
    result: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """One row: the chain's last sequence number and hash. Appenders lock it, so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class RateBucketRow(Base):
    """One token bucket per API key, shared by every server process on the database (see ``ratelimit.py``)."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)  # the database clock, seconds since the epoch


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level; SQLAlchemy's "begin" hook below issues BEGIN IMMEDIATE itself, so a
    # transaction takes the write lock up front instead of failing when it upgrades from read to write.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes (not power loss)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine; on SQLite, ``read_only`` engines begin deferred transactions (WAL readers never block)."""
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise ConfigError(f"directory of database {path} does not exist", subject=url)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _redact(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"


class Database:
    """An engine plus a session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = normalise_database_url(url)
        self.display_url = _redact(self.url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._lock_path: Path | None = None
        if self.url.startswith("sqlite"):
            path = self.url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                self._lock_path = Path(f"{path}.lock")
            self._read_engine: Engine | None = make_engine(self.url, read_only=True)
            self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        else:
            self._read_engine, self._read_sessions = None, self._sessions

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """On SQLite, queue writers on a lock file: the kernel wakes the next one at once, where SQLite's own busy
        handler polls with sleeps of up to 100 ms (which is what long latency tails under load are made of)."""
        if self._lock_path is None:
            yield
            return
        with self._write_lock:  # flock is per open file, shared by this process's threads: serialise them first
            if self._lock_fd is None:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures become ``EnvironmentFailure`` naming the database (the driver's text may hold data)."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise EnvironmentFailure(f"database error: {type(exc).__name__}", subject=self.display_url) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends normally and rolls back otherwise."""
        with self._writer(), self._errors(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection in a write transaction (cheaper than a session, for the audit writer's batches)."""
        with self._writer(), self._errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reading only: on SQLite it does not take the write lock, so reads never queue."""
        with self._errors(), self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def snapshot_session(self) -> Iterator[Session]:
        """A read-only session that sees one consistent snapshot throughout (SQLite WAL: a read transaction;
        PostgreSQL: REPEATABLE READ), without taking any write lock."""
        with self.read_session() as session:
            if self._read_engine is None:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", MIGRATIONS)
        return cfg

    def migrate(self) -> str:
        """Upgrade the schema to the newest revision; returns it. Safe to run again."""
        from alembic import command

        cfg = self._alembic_config()
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise EnvironmentFailure(f"cannot migrate {self.display_url}: {exc}", subject=self.display_url) from exc
        return self.head_revision()

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise EnvironmentFailure(
                f"cannot open database {self.display_url}: {exc}", subject=self.display_url
            ) from exc

    def check_schema(self) -> None:
        """Refuse to serve a database that is missing or behind the code."""
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            raise ConfigError(
                f"database {self.display_url} is at schema {current or 'none'}, this server needs {head}",
                subject=self.display_url,
                hint="run 'signery server migrate' (or 'signery server init' for a new database)",
            )

    def dispose(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()
