"""Fixtures for the signing service: a migrated database (SQLite or PostgreSQL), an app, tokens, a scanner.

Every response any test gets through ``client`` is remembered; ``test_zz_no_private_material`` style checks in
each module call :func:`assert_no_private_material` against the private keys decrypted straight from the database.
"""

from __future__ import annotations

import base64
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from signery.service import MasterKey, Settings, create_app
from signery.service.apikeys import create_api_key, first_admin_key
from signery.service.envelope import SealedKey, open_private_key
from signery.service.storage import Database, KeyVersionRow


def _root_conftest() -> ModuleType:
    # This directory's conftest shadows the suite's under the module name "conftest"; load that one by path so
    # `from conftest import require_tool` keeps meaning the suite's single definition.
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("signery_suite_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


require_tool = _root_conftest().require_tool

RESPONSES: list[bytes] = []  # every response body seen by any TestClient in this session


@dataclass
class Service:
    url: str
    master: MasterKey
    db: Database
    admin: str
    client: TestClient
    app: FastAPI

    def token(self, name: str, *scopes: str) -> str:
        with self.db.session() as s:
            _, tok = create_api_key(s, name=name, scopes=list(scopes), caller="test")
        return tok

    def h(self, token: str) -> dict[str, str]:
        return {"X-API-Key": token}


def _record(response: httpx.Response) -> None:
    response.read()
    RESPONSES.append(response.content + b"\n" + str(dict(response.headers)).encode())


def make_service(url: str, master: MasterKey, **settings: object) -> Service:
    db = Database(url)
    db.migrate()
    with db.session() as s:
        admin = first_admin_key(s)
    assert admin is not None
    app = create_app(Settings(database_url=url, master_key=master, **settings))  # type: ignore[arg-type]
    client = TestClient(app)
    client.event_hooks = {"request": [], "response": [_record]}
    return Service(url=url, master=master, db=db, admin=admin, client=client, app=app)


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


def private_material(db: Database, master: MasterKey) -> list[bytes]:
    """Every private key in the database, in the forms a leak would take (raw scalar, DER, PEM, base64, hex)."""
    forms: list[bytes] = []
    with db.session() as s:
        for v in s.scalars(select(KeyVersionRow)):
            sealed = SealedKey(v.wrapped_data_key, v.encrypted_private_key, v.master_key_id)
            key = open_private_key(sealed, master=master, name=v.name, version=v.version, key_id=v.key_id)
            der = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            secret = _secret_scalar(key)
            forms += [base64.b64encode(der)[8:48], secret.hex().encode(), base64.b64encode(secret)[:40]]
            forms += [base64.urlsafe_b64encode(secret)[:40]]
    return forms


def _secret_scalar(key: object) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.private_bytes_raw()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.private_numbers().private_value.to_bytes(48, "big").lstrip(b"\0")
    assert isinstance(key, rsa.RSAPrivateKey)
    d = key.private_numbers().d
    return d.to_bytes((d.bit_length() + 7) // 8, "big")


def assert_no_private_material(forms: list[bytes]) -> None:
    for body in RESPONSES:
        assert b"PRIVATE KEY" not in body
        for f in forms:
            assert f not in body, "a response contains private key material"
