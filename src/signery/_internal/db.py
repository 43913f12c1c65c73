"""The database set-up both servers share: URLs, engines, SQLite pragmas, Alembic, and how failures are reported.

SQLite (the default) and PostgreSQL through psycopg 3 are the two databases signery supports. The choices, made once:

- **WAL** journal: readers never block the writer, nor the writer them.
- **synchronous=FULL**: every commit is on disk before it returns. With WAL, ``NORMAL`` survives a process crash but
  may lose the last commits on power loss or an OS crash. Both servers promise what a commit means: the signing
  service hands out a signature only once its audit row committed, and creates keys whose public halves leave at
  once; the registry acknowledges ``name@version``, which is immutable from then on. A commit lost after it was
  acknowledged breaks those promises (a signature with no audit row, a version republished with other bytes). The
  cost is one fsync per transaction, and the service's audit writer commits many signatures per transaction.
- **busy_timeout** of 30 s: processes sharing one SQLite file wait for each other rather than fail.
- **Pools** of 10 connections plus 10 overflow per engine on PostgreSQL: a few worker processes stay well under
  PostgreSQL's default of 100 connections.
- **Errors**: a failing database becomes :class:`~signery.errors.EnvironmentFailure` naming the database (its URL
  without the password) and the failure's class. The driver's own text is added only for connection and locking
  failures; other messages can quote rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from ..errors import ConfigError, EnvironmentFailure

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_SIZE = 10
MAX_OVERFLOW = 10
SQLITE_PREFIX = "sqlite:///"
POSTGRESQL_PREFIX = "postgresql+psycopg://"
SqliteBegin = Literal["BEGIN", "BEGIN IMMEDIATE"]


def normalise_url(url: str) -> str:
    """``sqlite:///PATH`` as it is; ``postgresql://`` and ``postgres://`` mean psycopg 3 (SQLAlchemy's default
    PostgreSQL driver, psycopg2, is not a dependency). Anything else is refused."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return POSTGRESQL_PREFIX + url[len(prefix) :]
    if not url.startswith((SQLITE_PREFIX, POSTGRESQL_PREFIX)):
        raise ConfigError("database URL must be sqlite:///PATH or postgresql://USER@HOST/DB", subject=redact(url)[:200])
    return url


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; ``None`` for PostgreSQL and for an in-memory database."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = url.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _sqlite_pragmas(begin: SqliteBegin | None) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if begin is not None:
            # Autocommit at the driver level: the "begin" hook issues the transaction's BEGIN itself.
            dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    return on_connect


def make_engine(url: str, *, sqlite_begin: SqliteBegin | None = None) -> Engine:
    """An engine for ``url`` with the settings above.

    Args:
        sqlite_begin: on SQLite, the statement that opens every transaction: ``"BEGIN IMMEDIATE"`` takes the write
            lock up front, so a transaction never fails upgrading from reading to writing; ``"BEGIN"`` reads one
            snapshot without any lock. ``None`` leaves transactions to the driver (it begins one before the first
            write). Ignored on PostgreSQL.

    Raises:
        ConfigError: the URL is not one signery uses, or a SQLite file's directory does not exist.
    """
    url = normalise_url(url)
    try:
        if not url.startswith(SQLITE_PREFIX):
            return create_engine(url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_pre_ping=True)
        path = sqlite_file(url)
        if path is not None and not path.parent.is_dir():
            raise ConfigError(f"directory of database {path} does not exist", subject=str(path))
        engine = create_engine(url, connect_args={"check_same_thread": False})
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use database URL {redact(url)}: {exc}", subject=redact(url)) from exc
    event.listen(engine, "connect", _sqlite_pragmas(sqlite_begin))
    if sqlite_begin is not None:

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(sqlite_begin)

    return engine


def failure(exc: SQLAlchemyError, *, display: str, doing: str = "database error on") -> EnvironmentFailure:
    """The :class:`EnvironmentFailure` for ``exc``: what failed, on which database, and (for connection and locking
    failures only) the driver's first line."""
    detail = ""
    if isinstance(exc, OperationalError | InterfaceError) and isinstance(exc, DBAPIError):
        first = str(exc.orig).strip().splitlines()
        detail = f": {first[0][:300]}" if first else ""
    return EnvironmentFailure(f"{doing} {display}: {type(exc).__name__}{detail}", subject=display)


@contextmanager
def translated(display: str, *, doing: str = "database error on") -> Iterator[None]:
    """Turn a failing database inside the block into :func:`failure`'s error."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise failure(exc, display=display, doing=doing) from exc


class Migrations:
    """One server's Alembic migrations, shipped in the package at ``script_location`` (``"package:folder"``)."""

    def __init__(self, script_location: str) -> None:
        self.script_location = script_location

    def __repr__(self) -> str:
        return f"Migrations({self.script_location!r})"

    def _config(self) -> Config:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", self.script_location)
        return cfg

    def head(self) -> str:
        """The newest revision shipped."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._config()).get_current_head()
        assert head is not None, f"{self.script_location} holds no migration"
        return head

    def current(self, engine: Engine, *, display: str) -> str | None:
        """The database's revision; ``None`` for a database Alembic never touched."""
        with translated(display, doing="cannot open database"), engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return None if value is None else str(value)

    def upgrade(self, engine: Engine, *, display: str, revision: str = "head") -> str:
        """Upgrade the schema to ``revision`` (default: :meth:`head`) in one transaction; returns the revision the
        database is at. Safe to run again."""
        from alembic import command

        cfg = self._config()
        with translated(display, doing="cannot migrate"), engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return self.head() if revision == "head" else revision


__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "Migrations",
    "failure",
    "make_engine",
    "normalise_url",
    "redact",
    "sqlite_file",
    "translated",
]
