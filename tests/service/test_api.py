"""The service's HTTP API through TestClient, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from service_kit import Service, private_material
from sqlalchemy import select, text, update

from signery.keys import load_public_key, verify_signature
from signery.service.audit import verify_chain
from signery.service.storage import AuditRow, KeyVersionRow


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create(svc: Service, name: str, type_: str, **extra: object) -> dict:  # type: ignore[type-arg]
    r = svc.client.post("/v1/keys", json={"name": name, "type": type_, **extra}, headers=svc.h(svc.admin))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("type_", ["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048", "ml-dsa-65"])
def test_sign_and_verify_every_algorithm(service: Service, type_: str) -> None:
    info = create(service, "k", type_)
    pub = load_public_key(info["versions"][0]["public_key"].encode())
    h = service.h(service.admin)
    message = b"in-toto statement"
    r = service.client.post("/v1/keys/k/sign", json={"message": b64(message)}, headers=h)
    assert r.status_code == 200, r.text
    sig = base64.b64decode(r.json()["signature"])
    assert r.json()["key_id"] == info["versions"][0]["key_id"] and r.json()["version"] == 1
    hash_name = "sha384" if type_ == "ecdsa-p384" else "sha256"
    verify_signature(pub, sig, message, hash_name=hash_name)  # type: ignore[arg-type]
    r = service.client.post("/v1/keys/k/verify", json={"message": b64(message), "signature": b64(sig)}, headers=h)
    assert r.json()["valid"] is True, r.text
    r = service.client.post("/v1/keys/k/verify", json={"message": b64(b"other"), "signature": b64(sig)}, headers=h)
    assert r.json()["valid"] is False
    if type_ in ("ed25519", "ml-dsa-65"):  # they sign whole messages, never digests
        digest = hashlib.sha256(b"x").digest()
        r = service.client.post("/v1/keys/k/sign", json={"digest": b64(digest)}, headers=h)
        assert r.status_code == 400 and ("Ed25519" in r.json()["error"]["message"] or "ML-DSA" in r.text)


@pytest.mark.parametrize("padding_name", ["pss", "pkcs1v15"])
def test_rsa_digest_signing_matches_openssl_semantics(sqlite_service: Service, padding_name: str) -> None:
    svc = sqlite_service
    info = create(svc, "rsa", "rsa-2048")
    pub = load_public_key(info["versions"][0]["public_key"].encode())
    assert isinstance(pub, rsa.RSAPublicKey)
    digest = hashlib.sha256(b"payload").digest()
    body = {"digest": b64(digest), "hash_algorithm": "sha256", "signature_algorithm": padding_name}
    sig = base64.b64decode(
        svc.client.post("/v1/keys/rsa/sign", json=body, headers=svc.h(svc.admin)).json()["signature"]
    )
    pad = (
        padding.PKCS1v15()
        if padding_name == "pkcs1v15"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    )
    pub.verify(sig, b"payload", pad, hashes.SHA256())  # the digest of the data, as Dify verifies it
    pub.verify(sig, digest, pad, utils.Prehashed(hashes.SHA256()))


def test_raw_rsa_digest_signing_is_what_openssl_pkeyutl_verifies(sqlite_service: Service, tmp_path: Path) -> None:
    svc = sqlite_service
    info = create(svc, "raw", "rsa-2048")
    digest = hashlib.sha256(b"balenaos image").digest()
    body = {"digest": b64(digest), "hash_algorithm": "sha256", "signature_algorithm": "pkcs1v15-none"}
    r = svc.client.post("/v1/keys/raw/sign", json=body, headers=svc.h(svc.admin))
    assert r.status_code == 200, r.text
    (tmp_path / "pub.pem").write_text(info["versions"][0]["public_key"])
    (tmp_path / "digest").write_bytes(digest)
    (tmp_path / "sig").write_bytes(base64.b64decode(r.json()["signature"]))
    args = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-in", "digest", "-sigfile", "sig"]
    assert subprocess.run(args, cwd=tmp_path, capture_output=True).returncode == 0  # as the flasher checks it
    (tmp_path / "digest").write_bytes(hashlib.sha256(b"another image").digest())
    assert subprocess.run(args, cwd=tmp_path, capture_output=True).returncode != 0
    body = {"message": b64(b"m"), "signature_algorithm": "pkcs1v15-none"}
    assert svc.client.post("/v1/keys/raw/sign", json=body, headers=svc.h(svc.admin)).status_code == 400


def test_batch_sign_reports_per_item(sqlite_service: Service) -> None:
    svc = sqlite_service
    create(svc, "ec", "ecdsa-p256")
    good = b64(hashlib.sha256(b"a").digest())
    batch = [{"digest": good}, {"digest": b64(b"short")}, {"message": b64(b"m")}, {"digest": "!!notb64"}]
    r = svc.client.post("/v1/keys/ec/sign", json={"batch": batch}, headers=svc.h(svc.admin))
    assert r.status_code == 200, r.text
    results = r.json()["batch_results"]
    assert [("signature" in x, "error" in x) for x in results] == [
        (True, False),
        (False, True),
        (True, False),
        (False, True),
    ]
    r = svc.client.post("/v1/keys/ec/sign", json={"batch": batch, "digest": good}, headers=svc.h(svc.admin))
    assert r.status_code == 400
    r = svc.client.post("/v1/keys/ec/sign", json={"batch": [{"digest": good}] * 101}, headers=svc.h(svc.admin))
    assert r.status_code == 422
    sigs = [x["signature"] for x in results if "signature" in x]
    vbatch = [{"digest": good, "signature": sigs[0]}, {"message": b64(b"m"), "signature": sigs[0]}]
    r = svc.client.post("/v1/keys/ec/verify", json={"batch": vbatch}, headers=svc.h(svc.admin))
    assert [x["valid"] for x in r.json()["batch_results"]] == [True, False]


def test_versions_rotation_and_config(service: Service) -> None:
    h = service.h(service.admin)
    create(service, "rel", "ecdsa-p256")
    m = b64(b"statement")
    sig1 = service.client.post("/v1/keys/rel/sign", json={"message": m}, headers=h).json()
    r = service.client.post("/v1/keys/rel/rotate", headers=h)
    assert r.status_code == 200 and r.json()["latest_version"] == 2
    assert len({v["key_id"] for v in r.json()["versions"]}) == 2
    sig2 = service.client.post("/v1/keys/rel/sign", json={"message": m}, headers=h).json()
    assert sig2["version"] == 2 and sig2["key_id"] != sig1["key_id"]
    old = service.client.post("/v1/keys/rel/sign", json={"message": m, "version": 1}, headers=h).json()
    assert old["version"] == 1
    # verify finds the version by itself
    r = service.client.post("/v1/keys/rel/verify", json={"message": m, "signature": sig1["signature"]}, headers=h)
    assert r.json() == {"valid": True, "key_id": sig1["key_id"], "version": 1}
    r = service.client.post("/v1/keys/rel/config", json={"min_sign_version": 2, "min_verify_version": 2}, headers=h)
    assert r.status_code == 200
    r = service.client.post("/v1/keys/rel/sign", json={"message": m, "version": 1}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["reason"] == "policy-violation"
    r = service.client.post("/v1/keys/rel/verify", json={"message": m, "signature": sig1["signature"]}, headers=h)
    assert r.json()["valid"] is False
    r = service.client.post("/v1/keys/rel/config", json={"min_sign_version": 3}, headers=h)
    assert r.status_code == 400
    r = service.client.post("/v1/keys/rel/sign", json={"message": m, "version": 9}, headers=h)
    assert r.status_code == 404
    # deletion only once allowed
    assert service.client.delete("/v1/keys/rel", headers=h).status_code == 422
    service.client.post("/v1/keys/rel/config", json={"deletion_allowed": True}, headers=h)
    assert service.client.delete("/v1/keys/rel", headers=h).status_code == 204
    assert service.client.get("/v1/keys/rel").status_code == 404
    assert verify_chain(service.db).rows > 5


def test_create_conflict_and_bad_names(sqlite_service: Service) -> None:
    svc, h = sqlite_service, sqlite_service.h(sqlite_service.admin)
    create(svc, "dup", "ed25519")
    assert svc.client.post("/v1/keys", json={"name": "dup", "type": "ed25519"}, headers=h).status_code == 409
    for bad in ["..", ".", "a/b", "../etc", "x" * 65, "", "a b", "é", "a\nb"]:
        r = svc.client.post("/v1/keys", json={"name": bad, "type": "ed25519"}, headers=h)
        assert r.status_code in (400, 422), bad
    for bad in ["..", "%2e%2e", "a%2Fb", "x" * 65]:
        assert svc.client.get(f"/v1/keys/{bad}").status_code in (400, 404, 422), bad
    assert svc.client.post("/v1/keys", json={"name": "k", "type": "dsa"}, headers=h).status_code == 422
    r = svc.client.post("/v1/keys", json={"name": "k", "type": "ed25519", "subject": "CN=x"}, headers=h)
    assert r.status_code == 400
    r = svc.client.post("/v1/keys", json={"name": "k", "type": "ed25519", "extra": 1}, headers=h)
    assert r.status_code == 422


def test_x509_templates_and_chain(sqlite_service: Service) -> None:
    svc = sqlite_service
    p256 = {"key_algorithm": "ecdsa-p256"}
    root = create(svc, "root", "x509", template="root-ca", subject="CN=Root,O=Example", **p256)
    inter = create(svc, "inter", "x509", template="intermediate-ca", subject="CN=Inter", issuer="root", **p256)
    leaf = create(svc, "leaf", "x509", template="code-signing", subject="/O=Example/CN=Leaf", issuer="inter", **p256)
    certs = {
        n: x509.load_pem_x509_certificate(i["versions"][0]["certificate"].encode())
        for n, i in (("root", root), ("inter", inter), ("leaf", leaf))
    }
    certs["inter"].verify_directly_issued_by(certs["root"])
    certs["leaf"].verify_directly_issued_by(certs["inter"])
    bc = certs["leaf"].extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False
    eku = certs["leaf"].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in eku
    assert certs["leaf"].subject.rfc4514_string() == "CN=Leaf,O=Example"
    assert certs["inter"].extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    # a leaf cannot issue, a root cannot have an issuer, an intermediate needs one
    h = svc.h(svc.admin)
    bad = [
        {"name": "x", "type": "x509", "template": "kmod", "subject": "CN=x", "issuer": "leaf"},
        {"name": "x", "type": "x509", "template": "root-ca", "subject": "CN=x", "issuer": "root"},
        {"name": "x", "type": "x509", "template": "intermediate-ca", "subject": "CN=x"},
        {"name": "x", "type": "x509", "template": "kmod", "subject": "not a dn"},
        {"name": "x", "type": "x509", "template": "kmod", "subject": "CN=x", "issuer": "missing"},
    ]
    for body in bad:
        r = svc.client.post("/v1/keys", json={**body, **p256}, headers=h)
        assert r.status_code in (400, 404), (body, r.text)
    # the leaf signs digests like any key
    digest = hashlib.sha256(b"kernel module").digest()
    r = svc.client.post("/v1/keys/leaf/sign", json={"digest": b64(digest)}, headers=h)
    sig = base64.b64decode(r.json()["signature"])
    pub = certs["leaf"].public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_bootstrap_is_idempotent_and_all_or_nothing(service: Service) -> None:
    h = service.h(service.admin)
    doc = {
        "keys": [
            {"name": "PK", "type": "x509", "template": "secureboot-pk", "subject": "CN=PK"},
            {"name": "KEK", "type": "x509", "template": "secureboot-kek", "subject": "CN=KEK", "issuer": "PK"},
            {"name": "db", "type": "x509", "template": "secureboot-db", "subject": "CN=db"},
            {"name": "kmod", "type": "x509", "template": "kmod", "subject": "CN=kmod", "key_algorithm": "ecdsa-p256"},
            {"name": "gpg", "type": "openpgp-ed25519", "uid": "Build <build@example.org>"},
            {"name": "rsa", "type": "rsa-2048"},
        ]
    }
    r = service.client.post("/v1/bootstrap", json=doc, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["created"] == ["PK", "KEK", "db", "kmod", "gpg", "rsa"]
    pk = x509.load_pem_x509_certificate(first["keys"][0]["versions"][0]["certificate"].encode())
    kek = x509.load_pem_x509_certificate(first["keys"][1]["versions"][0]["certificate"].encode())
    kek.verify_directly_issued_by(pk)
    assert isinstance(pk.public_key(), rsa.RSAPublicKey) and pk.public_key().key_size == 2048
    assert first["keys"][4]["versions"][0]["openpgp_certificate"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    again = service.client.post("/v1/bootstrap", json=doc, headers=h).json()
    assert again["created"] == [] and again["keys"] == first["keys"]
    # a conflicting document changes nothing, not even the keys before the conflict
    doc2 = {"keys": [{"name": "new", "type": "ed25519"}, {"name": "rsa", "type": "ed25519"}]}
    r = service.client.post("/v1/bootstrap", json=doc2, headers=h)
    assert r.status_code == 409
    assert service.client.get("/v1/keys/new").status_code == 404


def test_body_limit_and_rate_limit(sqlite_url: str, master: object) -> None:
    from service_kit import make_service

    svc = make_service(sqlite_url, master, rate_per_second=1.0, burst=3, max_body_bytes=4096)  # type: ignore[arg-type]
    h = svc.h(svc.admin)
    r = svc.client.post(
        "/v1/keys", content=b"{" + b" " * 5000 + b"}", headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000

    r = svc.client.post("/v1/keys", content=chunks(), headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413
    codes = [svc.client.get("/v1/keys", headers=h).status_code for _ in range(4)]
    assert 429 in codes
    r = svc.client.get("/v1/keys", headers=h)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    svc.client.close()
    svc.db.dispose()


def test_audit_rows_and_tamper_detection(service: Service) -> None:
    h = service.h(service.admin)
    create(service, "a", "ed25519")
    digest_msg = b"hello"
    service.client.post("/v1/keys/a/sign", json={"message": b64(digest_msg)}, headers=h)
    service.client.post("/v1/keys", json={"name": "b", "type": "ed25519"})  # denied: 401
    r = service.client.get("/v1/audit", headers=h)
    body = r.json()
    assert body["verification"] == {
        "scope": "page",
        "valid": True,
        "from_seq": 1,
        "to_seq": body["head_seq"],
        "error": None,
    }
    actions = [(e["action"], e["result"]) for e in body["entries"]]
    assert ("key.create", "ok") in actions and ("sign", "ok") in actions
    assert ("POST /v1/keys", "denial:401".replace("denial", "denied")) in actions
    sign_row = next(e for e in body["entries"] if e["action"] == "sign")
    assert sign_row["digest"] == "message-sha256:" + hashlib.sha256(digest_msg).hexdigest()
    assert sign_row["caller"] == "admin" and sign_row["key_version"] == 1
    # edit a row: the chain names it
    with service.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.action == "sign").values(caller="mallory"))
    r = service.client.get("/v1/audit", headers=h)
    checked = r.json()["verification"]
    assert checked["valid"] is False and "altered" in checked["error"]["message"]


def test_audit_deletion_detected(sqlite_service: Service) -> None:
    from signery.errors import TamperedError

    svc = sqlite_service
    for name in ("a", "b", "c"):
        create(svc, name, "ed25519")
    with svc.db.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"))
    with pytest.raises(TamperedError, match="head"):
        verify_chain(svc.db)
    with svc.db.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    with pytest.raises(TamperedError, match="missing"):
        verify_chain(svc.db)


def test_database_holds_no_plaintext_key_and_rows_cannot_be_swapped(sqlite_service: Service) -> None:
    svc, h = sqlite_service, sqlite_service.h(sqlite_service.admin)
    create(svc, "one", "ed25519")
    create(svc, "two", "ed25519")
    forms = private_material(svc.db, svc.master)
    path = Path(svc.url.removeprefix("sqlite:///"))
    raw = path.read_bytes() + Path(f"{path}-wal").read_bytes()
    assert b"PRIVATE KEY" not in raw
    for f in forms:
        assert f not in raw
    # move key two's sealed private key onto key one: the AAD (name, version, key id) refuses it
    with svc.db.session() as s:
        two = s.scalars(select(KeyVersionRow).where(KeyVersionRow.name == "two")).one()
        s.execute(
            update(KeyVersionRow)
            .where(KeyVersionRow.name == "one")
            .values(wrapped_data_key=two.wrapped_data_key, encrypted_private_key=two.encrypted_private_key)
        )
    r = svc.client.post("/v1/keys/one/sign", json={"message": b64(b"x")}, headers=h)
    assert r.status_code == 503 and "altered" in r.json()["error"]["message"]


def test_wrong_master_key_is_named(sqlite_service: Service) -> None:
    from fastapi.testclient import TestClient

    from signery.service import MasterKey, Settings, create_app

    svc = sqlite_service
    create(svc, "k", "ed25519")
    other = create_app(Settings(database_url=svc.url, master_key=MasterKey(os.urandom(32))))
    with TestClient(other) as c:
        r = c.post("/v1/keys/k/sign", json={"message": b64(b"x")}, headers=svc.h(svc.admin))
    assert r.status_code == 503 and "master key" in r.json()["error"]["message"]


def test_unmigrated_database_is_refused(tmp_path: object, master: object) -> None:
    from signery.errors import ConfigError
    from signery.service import Settings, create_app

    with pytest.raises(ConfigError, match="migrate"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/empty.db", master_key=master))  # type: ignore[arg-type]
