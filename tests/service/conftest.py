"""Fixtures for the signing service: a migrated database (SQLite or PostgreSQL), an app, tokens, a scanner.

Every response any test gets through ``client`` is remembered; ``test_zz_no_private_material`` style checks in
each module call :func:`assert_no_private_material` against the private keys decrypted straight from the database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_kit import Service, assert_no_private_material, make_service, private_material

from signery.service import MasterKey
from support import require_tool  # noqa: F401 - re-exported for this directory's test modules


@pytest.fixture()
def master() -> MasterKey:
    return MasterKey(os.urandom(32))


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path: Path, master: MasterKey) -> Iterator[Service]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'service.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    svc = make_service(url, master)
    try:
        yield svc
    finally:
        svc.client.close()
        private_forms = private_material(svc.db, master)
        svc.db.dispose()
        assert_no_private_material(private_forms)


@pytest.fixture()
def sqlite_service(sqlite_url: str, master: MasterKey) -> Iterator[Service]:
    svc = make_service(sqlite_url, master)
    try:
        yield svc
    finally:
        svc.client.close()
        svc.db.dispose()
