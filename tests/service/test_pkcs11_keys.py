"""Keys the signing service keeps in a PKCS#11 token (``"storage": "pkcs11"``), against a real SoftHSM2 token.

Real ``signery server --workers 2`` processes with ``--pkcs11-token``: key versions are generated inside the token,
sign through the same HTTP API as sealed keys (single, batch, OpenPGP), verify with signery and OpenSSL, rotate,
audit; the database holds no private material for them; a wrong PIN, a removed token and a deleted object each
answer with their reason, and never with the PIN.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from servers import ServerProcess, init_service, start_server
from service_kit import RESPONSES, assert_no_private_material, private_material
from sqlalchemy import select

from signery import keys
from signery.errors import UsageError
from signery.pkcs11 import export_private_key, parse_uri
from signery.service import MasterKey
from signery.service.audit import verify_chain
from signery.service.keys.cache import KEY_CACHE_SECONDS
from signery.service.storage import AuditRow, Database, KeyRow, KeyVersionRow
from softhsm import MODULE, PIN, SoftHSM, softhsm_token
from support import require_tool

WRONG_PIN = "98765-not-the-pin"


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    yield from softhsm_token(tmp_path_factory)


@dataclass
class Svc:
    server: ServerProcess
    url: str
    db_url: str
    home: Path
    admin: str

    def h(self) -> dict[str, str]:
        return {"X-API-Key": self.admin}

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        r = httpx.post(f"{self.url}{path}", json=body, headers=self.h(), timeout=60)
        RESPONSES.append(r.content)
        return r

    def get(self, path: str) -> httpx.Response:
        r = httpx.get(f"{self.url}{path}", headers=self.h(), timeout=60)
        RESPONSES.append(r.content)
        return r


def _pin_file(home: Path, pin: str) -> Path:
    path = home / "token.pin"
    path.write_text(pin + "\n")
    path.chmod(0o600)
    return path


def _serve(home: Path, db_url: str, admin: str, token: str, pin: str, *, workers: int = 2) -> Svc:
    pin_file = _pin_file(home, pin)
    os.environ["SIGNERY_PKCS11_MODULE"] = MODULE  # the server reads the module from here (restored by the fixture)
    extra = ("--pkcs11-token", token, "--pkcs11-pin-file", str(pin_file))
    server = start_server(home, db_url, workers=workers, extra=extra)
    return Svc(server=server, url=server.url, db_url=db_url, home=home, admin=admin)


@pytest.fixture(scope="module")
def svc(hsm: SoftHSM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    home = tmp_path_factory.mktemp("pkcs11-service")
    db_url = f"sqlite:///{home / 'svc.db'}"
    admin = init_service(home, db_url)
    old = os.environ.get("SIGNERY_PKCS11_MODULE")
    s = _serve(home, db_url, admin, "pkcs11:token=build", PIN)
    try:
        yield s
    finally:
        s.server.stop()
        if old is None:
            os.environ.pop("SIGNERY_PKCS11_MODULE", None)
        else:
            os.environ["SIGNERY_PKCS11_MODULE"] = old


def _public(svc: Svc, name: str, version: int) -> keys.PublicKey:
    doc = svc.get(f"/v1/keys/{name}").json()
    pem = next(v["public_key"] for v in doc["versions"] if v["version"] == version)
    return keys.load_public_key(pem.encode(), source=name)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _openssl_verify(tmp: Path, public: keys.PublicKey, message: bytes, signature: bytes, *opts: str) -> None:
    require_tool("openssl")
    (tmp / "pub.pem").write_bytes(keys.public_key_pem(public))
    (tmp / "msg.bin").write_bytes(message)
    (tmp / "sig.bin").write_bytes(signature)
    if isinstance(public, ed25519.Ed25519PublicKey):
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg.bin"]
        cmd += ["-sigfile", "sig.bin"]
    else:
        cmd = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", *opts, "-signature", "sig.bin", "msg.bin"]
    out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    assert out.returncode == 0 and "Verif" in out.stdout, out.stdout + out.stderr


def _rows(db_url: str, name: str) -> list[KeyVersionRow]:
    db = Database(db_url)
    try:
        with db.read_session() as s:
            return list(s.scalars(select(KeyVersionRow).where(KeyVersionRow.name == name)))
    finally:
        db.dispose()


# -- creating, signing, verifying, rotating ----------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ed25519", "rsa-3072"])
def test_a_token_key_signs_through_the_api(svc: Svc, tmp_path: Path, key_type: str) -> None:
    name = f"tok-{key_type}"
    r = svc.post("/v1/keys", {"name": name, "type": key_type, "storage": "pkcs11"})
    assert r.status_code == 201, r.text
    assert r.json()["storage"] == "pkcs11" and r.json()["versions"][0]["algorithm"] == key_type
    public = _public(svc, name, 1)
    message = b"release artifact " + key_type.encode()
    # single
    r = svc.post(f"/v1/keys/{name}/sign", {"message": _b64(message)})
    assert r.status_code == 200, r.text
    sig = base64.b64decode(r.json()["signature"])
    assert r.json()["key_id"] == keys.key_id(public) and r.json()["version"] == 1
    keys.verify_signature(public, sig, message)
    opts: tuple[str, ...] = ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32")
    _openssl_verify(tmp_path, public, message, sig, *opts)
    # batch: messages, and (RSA) digests in both paddings
    items: list[dict[str, Any]] = [{"message": _b64(message + bytes([i]))} for i in range(3)]
    if key_type.startswith("rsa"):
        items += [
            {"digest": _b64(hashlib.sha256(message).digest()), "signature_algorithm": "pkcs1v15"},
            {"digest": _b64(hashlib.sha384(message).digest())},
        ]
    r = svc.post(f"/v1/keys/{name}/sign", {"batch": items})
    assert r.status_code == 200, r.text
    results = r.json()["batch_results"]
    assert len(results) == len(items) and all("signature" in x for x in results), results
    for item, res in zip(items, results, strict=True):
        value = base64.b64decode(res["signature"])
        if "message" in item:
            keys.verify_signature(public, value, base64.b64decode(item["message"]))
        else:
            digest = base64.b64decode(item["digest"])
            padding = item.get("signature_algorithm", "pss")
            hash_name = {32: "sha256", 48: "sha384"}[len(digest)]
            keys.verify_signature(public, value, digest, hash_name=hash_name, prehashed=True, rsa_padding=padding)
    if key_type.startswith("rsa"):
        pkcs1 = base64.b64decode(results[3]["signature"])
        _openssl_verify(tmp_path, public, message, pkcs1)
    # the service verifies with the stored public key
    r = svc.post(f"/v1/keys/{name}/verify", {"message": _b64(message), "signature": _b64(sig)})
    assert r.status_code == 200 and r.json()["valid"] is True and r.json()["version"] == 1
    # the token holds it: sensitive, never extractable
    row = _rows(svc.db_url, name)[0]
    assert row.token_object is not None
    with pytest.raises(UsageError, match="never leaves the token"):
        export_private_key(parse_uri(row.token_object), module=MODULE, pin=PIN)


def test_rotation_makes_the_next_version_in_the_token(svc: Svc) -> None:
    name = "tok-rotating"
    assert svc.post("/v1/keys", {"name": name, "type": "ed25519", "storage": "pkcs11"}).status_code == 201
    message = b"before rotation"
    first = svc.post(f"/v1/keys/{name}/sign", {"message": _b64(message)}).json()
    r = svc.post(f"/v1/keys/{name}/rotate", {})
    assert r.status_code == 200, r.text
    assert r.json()["latest_version"] == 2 and r.json()["storage"] == "pkcs11"
    time.sleep(KEY_CACHE_SECONDS + 0.2)  # the other worker's description of the key is this old at most
    second = svc.post(f"/v1/keys/{name}/sign", {"message": _b64(b"after rotation")}).json()
    assert second["version"] == 2 and second["key_id"] != first["key_id"]
    keys.verify_signature(_public(svc, name, 2), base64.b64decode(second["signature"]), b"after rotation")
    # v1 still verifies, through the service and with its stored public key
    r = svc.post(f"/v1/keys/{name}/verify", {"message": _b64(message), "signature": first["signature"]})
    assert r.json()["valid"] is True and r.json()["version"] == 1
    keys.verify_signature(_public(svc, name, 1), base64.b64decode(first["signature"]), message)
    # v1 signs on request too
    old = svc.post(f"/v1/keys/{name}/sign", {"message": _b64(b"old"), "version": 1}).json()
    assert old["version"] == 1 and old["key_id"] == first["key_id"]
    rows = sorted(_rows(svc.db_url, name), key=lambda v: v.version)
    assert [r.version for r in rows] == [1, 2]
    labels = [parse_uri(r.token_object or "").object or "" for r in rows]
    assert labels[0].startswith(f"signery.{name}.v1.") and labels[1].startswith(f"signery.{name}.v2.")


def test_an_openpgp_key_in_the_token_signs_openpgp_hashes(svc: Svc) -> None:
    from signery.openpgp._certs import parse_certificate

    name = "tok-pgp"
    r = svc.post("/v1/keys", {"name": name, "type": "openpgp-ed25519", "storage": "pkcs11", "uid": "T <t@x.test>"})
    assert r.status_code == 201, r.text
    version = r.json()["versions"][0]
    cert = version["openpgp_certificate"]
    assert cert.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    digest = hashlib.sha256(b"data and trailer").digest()
    r = svc.post(f"/v1/keys/{name}/openpgp-sign", {"digest": _b64(digest), "hash_algorithm": "sha256"})
    assert r.status_code == 200, r.text
    assert r.json()["fingerprint"] == version["key_id"]
    public = _public(svc, name, 1)
    keys.verify_signature(public, base64.b64decode(r.json()["signature"]), digest)
    # the certificate's self-signature was made in the token, over the very key the service recorded
    parsed = parse_certificate(cert.encode(), source=name)
    assert parsed.primary.bound and parsed.primary.key.fingerprint == version["key_id"]
    assert parsed.uids == ["T <t@x.test>"]


def test_what_the_token_cannot_hold_is_refused(svc: Svc) -> None:
    r = svc.post(
        "/v1/keys",
        {"name": "tok-x509", "type": "x509", "template": "code-signing", "subject": "CN=x", "storage": "pkcs11"},
    )
    assert r.status_code == 400 and "cannot be kept in the PKCS#11 token" in r.text
    r = svc.post("/v1/keys", {"name": "tok-bad", "type": "ed25519", "storage": "vault"})
    assert r.status_code == 422


def test_the_database_holds_no_private_material(svc: Svc) -> None:
    assert svc.post("/v1/keys", {"name": "sealed-one", "type": "ed25519"}).status_code == 201
    sealed_forms: list[bytes] = []
    db = Database(svc.db_url)
    try:
        with db.read_session() as s:
            versions = list(s.scalars(select(KeyVersionRow)))
            storages = {k.name: k.storage for k in s.scalars(select(KeyRow))}
        token_rows = [v for v in versions if v.token_object is not None]
        assert len(token_rows) >= 3 and storages["sealed-one"] == "sealed"
        for v in token_rows:
            assert storages[v.name] == "pkcs11"
            assert v.wrapped_data_key is None and v.encrypted_private_key is None and v.master_key_id is None
            ref = parse_uri(v.token_object or "")
            assert ref.token == "build" and ref.object and ref.id and ref.module_path is None
            assert ref.pin_value is None and ref.pin_source is None and "pin" not in (v.token_object or "")
        # the service_kit leak check, over the sealed rows (the token rows have nothing to open)
        master = MasterKey.from_file(svc.home / "master.key")
        sealed_db = _SealedOnly(db)
        sealed_forms = private_material(sealed_db, master)  # type: ignore[arg-type]
    finally:
        db.dispose()
    assert sealed_forms
    assert_no_private_material(sealed_forms)  # every response this module's servers gave


class _SealedOnly:
    """A Database stand-in whose sessions see only the sealed key versions (for service_kit.private_material)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def session(self) -> Any:
        import contextlib

        @contextlib.contextmanager
        def scoped() -> Iterator[Any]:
            with self._db.read_session() as s:
                yield _Filtered(s)

        return scoped()


class _Filtered:
    def __init__(self, session: Any) -> None:
        self._s = session

    def scalars(self, stmt: Any) -> Any:
        return [v for v in self._s.scalars(stmt) if v.token_object is None]


def test_audit_chain_records_token_keys_and_verifies(svc: Svc) -> None:
    assert svc.post("/v1/keys/tok-ed25519/sign", {"message": _b64(b"audited")}).status_code == 200
    db = Database(svc.db_url)
    try:
        report = verify_chain(db)
        with db.read_session() as s:
            rows = list(s.scalars(select(AuditRow).where(AuditRow.key_name == "tok-ed25519")))
    finally:
        db.dispose()
    assert report.rows > 0
    created = [r for r in rows if r.action == "key.create"]
    assert len(created) == 1 and " in pkcs11:token=build;object=signery.tok-ed25519.v1." in (created[0].detail or "")
    signed = [r for r in rows if r.action == "sign" and r.result == "ok"]
    assert signed and all(r.digest for r in signed)


def test_two_workers_under_load_every_signature_valid(svc: Svc) -> None:
    public = _public(svc, "tok-ed25519", 1)
    rsa_public = _public(svc, "tok-rsa-3072", 1)

    def one(i: int, client: httpx.Client) -> tuple[str, bytes, bytes]:
        name = "tok-rsa-3072" if i % 10 == 0 else "tok-ed25519"
        message = f"load {i}".encode()
        r = client.post(f"/v1/keys/{name}/sign", json={"message": _b64(message)})
        assert r.status_code == 200, r.text
        return name, message, base64.b64decode(r.json()["signature"])

    clients = [httpx.Client(base_url=svc.url, headers=svc.h(), timeout=60) for _ in range(20)]
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda i: one(i, clients[i % 20]), range(200)))
    finally:
        for c in clients:
            c.close()
    assert len(results) == 200
    for name, message, sig in results:
        keys.verify_signature(rsa_public if name == "tok-rsa-3072" else public, sig, message)


# -- failures -------------------------------------------------------------------------------------------------------


def test_a_wrong_pin_is_a_config_error_that_never_shows_the_pin(svc: Svc, tmp_path: Path) -> None:
    """A second server on the same database and token, with a wrong PIN: 503 config-error, the PIN not shown."""
    wrong = _serve(svc.home, svc.db_url, svc.admin, "pkcs11:token=build", WRONG_PIN, workers=1)
    try:
        for _ in range(2):  # the second is refused without trying the PIN again
            r = wrong.post("/v1/keys/tok-ed25519/sign", {"message": _b64(b"x")})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["reason"] == "config-error" and "wrong PIN" in r.text
            assert WRONG_PIN not in r.text and f"={PIN}" not in r.text
        r = wrong.post("/v1/keys", {"name": "tok-never", "type": "ed25519", "storage": "pkcs11"})
        assert r.status_code == 503 and r.json()["error"]["reason"] == "config-error" and WRONG_PIN not in r.text
        # sealed keys are unaffected
        assert wrong.post("/v1/keys/sealed-one/sign", {"message": _b64(b"x")}).status_code in (200, 404)
    finally:
        wrong.server.stop()
        _pin_file(svc.home, PIN)
    stderr = wrong.server.proc.stderr.read().decode() if wrong.server.proc.stderr else ""
    assert WRONG_PIN not in stderr


def test_a_server_without_a_token_refuses_token_keys(svc: Svc) -> None:
    plain = start_server(svc.home, svc.db_url, workers=1)
    try:
        r = httpx.post(f"{plain.url}/v1/keys/tok-ed25519/sign", json={"message": _b64(b"x")}, headers=svc.h())
        assert r.status_code == 503 and r.json()["error"]["reason"] == "config-error"
        assert "none configured" in r.text
    finally:
        plain.stop()


def test_a_deleted_object_is_an_unknown_key(svc: Svc, hsm: SoftHSM) -> None:
    import pkcs11

    from signery._internal.pkcs11_token import find_token

    name = "tok-doomed"
    assert svc.post("/v1/keys", {"name": name, "type": "ed25519", "storage": "pkcs11"}).status_code == 201
    assert svc.post(f"/v1/keys/{name}/sign", {"message": _b64(b"x")}).status_code == 200
    label = parse_uri(_rows(svc.db_url, name)[0].token_object or "").object
    token = find_token(pkcs11.lib(MODULE), parse_uri("pkcs11:token=build"))
    try:
        session = token.open(rw=True, user_pin=PIN)
    except pkcs11.UserAlreadyLoggedIn:
        session = token.open(rw=True)
    with session:
        objects = list(session.get_objects({pkcs11.Attribute.LABEL: label}))
        assert len(objects) == 2  # the private and the public key
        for o in objects:
            o.destroy()
    for _ in range(4):  # both workers
        r = svc.post(f"/v1/keys/{name}/sign", {"message": _b64(b"y")})
        assert r.status_code == 404, r.text
        assert r.json()["error"]["reason"] == "unknown-key" and "not in the PKCS#11 token" in r.text


def test_a_removed_token_is_a_config_error(svc: Svc, hsm: SoftHSM, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("pkcs11-gone")
    db_url = f"sqlite:///{home / 'svc.db'}"
    admin = init_service(home, db_url)
    gone = _serve(home, db_url, admin, "pkcs11:token=gone", PIN, workers=1)
    try:
        assert gone.post("/v1/keys", {"name": "tok-gone", "type": "ed25519", "storage": "pkcs11"}).status_code == 201
        assert gone.post("/v1/keys/tok-gone/sign", {"message": _b64(b"x")}).status_code == 200
        shutil.rmtree(hsm.token_dir("gone"))
        r = gone.post("/v1/keys/tok-gone/sign", {"message": _b64(b"y")})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["reason"] == "config-error" and "is not present" in r.text
    finally:
        gone.server.stop()
