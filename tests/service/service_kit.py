"""Test helpers for the signing service, in a module of their own: the directory's conftest imports them, and
test modules import them from here (every conftest is imported under the same name, so importing from
``conftest`` finds whichever directory's conftest was loaded last).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from signery.service import MasterKey, Settings, create_app
from signery.service.apikeys import create_api_key, first_admin_key
from signery.service.envelope import SealedKey, open_private_key
from signery.service.storage import Database, KeyVersionRow

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
    if isinstance(key, ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey):
        return key.private_bytes_raw()  # ML-DSA: the 32-byte seed the key is expanded from
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
