"""Tables and the database handle (SQLAlchemy 2; SQLite embedded, PostgreSQL via psycopg 3).

The schema is created and upgraded only by the Alembic migrations shipped in ``signery/service/migrations``
(:meth:`Database.migrate`); the server refuses to run on a database that is not at the current revision.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import Boolean, Connection, Engine, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .._internal.db import Migrations, make_engine, normalise_url, redact, sqlite_file, translated
from ..errors import ConfigError

MIGRATIONS = Migrations("signery.service:migrations")


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
    # Where new versions' private keys are made and kept: "sealed" (in key_versions, under the master key) or
    # "pkcs11" (in the server's PKCS#11 token; key_versions holds only a reference).
    storage: Mapped[str] = mapped_column(String(16), default="sealed", server_default="sealed")


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
    # A sealed version: its private key under a data key under the master key. A token-backed version: all three
    # NULL, and token_object names the private key in the PKCS#11 token (an RFC 7512 URI path, never a PIN).
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    encrypted_private_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    master_key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    token_object: Mapped[str | None] = mapped_column(Text, nullable=True)


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


class Database:
    """An engine plus a session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.display_url = redact(self.url)
        # SQLite: writers take the write lock as they begin, so none fails upgrading from a read; readers begin
        # deferred transactions on an engine of their own, and WAL never blocks them.
        self.engine = make_engine(self.url, sqlite_begin="BEGIN IMMEDIATE")
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()
        self._lock_fd: int | None = None
        path = sqlite_file(self.url)
        self._lock_path = None if path is None else Path(f"{path}.lock")
        if self.url.startswith("sqlite"):
            self._read_engine: Engine | None = make_engine(self.url, sqlite_begin="BEGIN")
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

    def _errors(self) -> AbstractContextManager[None]:
        return translated(self.display_url)

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

    def migrate(self) -> str:
        """Upgrade the schema to the newest revision; returns it. Safe to run again."""
        return MIGRATIONS.upgrade(self.engine, display=self.display_url)

    def head_revision(self) -> str:
        return MIGRATIONS.head()

    def current_revision(self) -> str | None:
        return MIGRATIONS.current(self.engine, display=self.display_url)

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
