"""The registry's database: the shared set-up of :mod:`signery._internal.db`, migrated whenever it is opened."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .._internal.db import Migrations, make_engine, redact
from .settings import RegistrySettings

MIGRATIONS = Migrations("signery.registry:migrations")


def open_engine(settings: RegistrySettings) -> Engine:
    """Create the engine and bring the schema up to date (Alembic ``upgrade head``; nothing to do at the head).

    Transactions are the driver's (begun before the first write): the store's writes are single statements or short
    read-then-write sequences whose races end in an integrity error, which it reports as a conflict.
    """
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    MIGRATIONS.upgrade(engine, display=redact(url))
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
