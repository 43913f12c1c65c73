"""Database engine and migrations: SQLite (WAL) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError, EnvironmentFailure
from .settings import RegistrySettings

HEAD_REVISION = "0001"  # newest migration in migrations/versions; a test keeps the two in step
SQLITE_BUSY_TIMEOUT_MS = 10_000  # writers queue behind each other instead of failing with "database is locked"


def open_engine(settings: RegistrySettings) -> Engine:
    """Create the engine and bring the schema up to date (Alembic ``upgrade head``)."""
    url = settings.sqlalchemy_url
    try:
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use database URL: {exc}", subject="database_url") from exc
    migrate(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise EnvironmentFailure(f"database unavailable: {exc.__class__.__name__}: {exc}", subject="database") from exc


def migrate(engine: Engine) -> None:
    """Apply the migrations shipped in :mod:`signery.registry.migrations`.

    A database already at :data:`HEAD_REVISION` is left alone without loading Alembic (it costs a server ~10 MB).
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "signery.registry:migrations")
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise EnvironmentFailure(f"database unavailable: {exc.__class__.__name__}: {exc}", subject="database") from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
