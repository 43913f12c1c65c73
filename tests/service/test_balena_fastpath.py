"""``/balena/cert/sign`` and ``/balena/gpg/sign`` answered by the fast path (``service/fastpath.py``): the same
replies, refusals and audit rows as the FastAPI routes, which still answer everything the fast path hands on."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from service_kit import Service, make_service
from sqlalchemy import select

from signery.service import MasterKey
from signery.service.storage import AuditRow

BOOTSTRAP = {
    "gpg": {"name_real": "balenaOS", "name_email": "security@balena.io"},
    "certificates": {"kmod": {"cert_id": "kmod", "subject": "/CN=balenaOS kmod/", "key_length": 2048}},
}


@pytest.fixture()
def svc(tmp_path: os.PathLike[str], master: MasterKey) -> Iterator[tuple[Service, str]]:
    s = make_service(f"sqlite:///{tmp_path}/service.db", master)
    r = s.client.post("/balena/bootstrap", json=BOOTSTRAP, headers=s.h(s.admin))
    assert r.status_code == 200, r.text
    try:
        yield s, r.json()["gpg"]["fingerprint"]
    finally:
        s.client.close()
        s.db.dispose()


def _rows(s: Service, action: str) -> list[AuditRow]:
    with s.db.read_session() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.seq)))


def test_cert_sign_is_raw_rsa_and_audited(svc: tuple[Service, str]) -> None:
    s, _ = svc
    digest = hashlib.sha256(b"grub.cfg").digest()
    for _ in range(3):  # the second and third come from this process's alias and certificate caches
        r = s.client.post("/balena/cert/sign", json={"cert_id": "kmod", "digest": digest.hex()}, headers=s.h(s.admin))
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.content == b'{"signature":"' + r.json()["signature"].encode() + b'"}'
        pem = s.client.get("/balena/cert/kmod").json()["cert"]
        public = x509.load_pem_x509_certificate(pem.encode()).public_key()
        recovered = public.recover_data_from_signature(  # type: ignore[union-attr]
            base64.b64decode(r.json()["signature"]), padding.PKCS1v15(), None
        )
        assert recovered == digest  # PKCS#1 v1.5 without a DigestInfo, as openssl pkeyutl -sign
    rows = _rows(s, "balena.cert-sign")
    assert [r.result for r in rows] == ["ok"] * 3 and rows[0].digest == f"sha256:{digest.hex()}"


def test_gpg_sign_in_memory_matches_the_spooling_route(svc: tuple[Service, str]) -> None:
    s, fpr = svc
    payload = os.urandom(1024)
    body = {"key_id": fpr.lower(), "payload": base64.b64encode(payload).decode()}
    r = s.client.post("/balena/gpg/sign", json=body, headers=s.h(s.admin))
    assert r.status_code == 200
    sig = base64.b64decode(r.json()["signature"])
    assert sig[0] in (0x88, 0x89, 0xC2) and len(sig) > 300  # one binary signature packet (RSA-3072)
    # A chunked body (no Content-Length) takes the FastAPI route, which spools the payload to disk.
    text = b'{"key_id": "%s", "payload": "%s"}' % (fpr.encode(), body["payload"].encode())
    headers = {**s.h(s.admin), "Content-Type": "application/json"}
    r2 = s.client.post("/balena/gpg/sign", content=iter([text[:100], text[100:]]), headers=headers)
    assert r2.status_code == 200
    spooled = base64.b64decode(r2.json()["signature"])
    # Same key, hash and packet layout; only the creation time (and so the signature value) may differ.
    assert spooled[:8] == sig[:8]
    rows = _rows(s, "balena.gpg-sign")
    assert [r.result for r in rows] == ["ok", "ok"]
    assert {r.digest for r in rows} == {f"sha256:{hashlib.sha256(payload).hexdigest()}"}


def test_refusals_are_the_routes(svc: tuple[Service, str]) -> None:
    s, fpr = svc
    digest = hashlib.sha256(b"x").hexdigest()
    ok = {"cert_id": "kmod", "digest": digest}
    assert s.client.post("/balena/cert/sign", json=ok).status_code == 401
    assert s.client.post("/balena/cert/sign", json=ok, headers={"X-API-Key": "sgy_bad_bad"}).status_code == 401
    other = s.token("other", "sign:nothing-*")
    r = s.client.post("/balena/cert/sign", json=ok, headers=s.h(other))
    assert r.status_code == 403 and r.json()["error"]["reason"] == "policy-violation"
    denied = _rows(s, "POST /balena/cert/sign")
    assert [d.result for d in denied][-1] == "denied:403"
    r = s.client.post("/balena/cert/sign", json={**ok, "cert_id": "nope"}, headers=s.h(s.admin))
    assert r.status_code == 404 and r.json()["error"]["reason"] == "unknown-key"
    r = s.client.post("/balena/gpg/sign", json={"key_id": "ab" * 8, "payload": ""}, headers=s.h(s.admin))
    assert r.status_code == 404
    # Bodies the fast path does not take are FastAPI's to answer, as before.
    assert s.client.post("/balena/cert/sign", json={**ok, "x": 1}, headers=s.h(s.admin)).status_code == 422
    assert s.client.post("/balena/cert/sign", json={**ok, "digest": "00"}, headers=s.h(s.admin)).status_code == 422
    bad = {"key_id": fpr, "payload": "QUJD\nREVG"}
    r = s.client.post("/balena/gpg/sign", json=bad, headers=s.h(s.admin))
    assert r.status_code == 400 and r.json()["error"]["reason"] == "malformed"
    r = s.client.post("/balena/gpg/sign", json={"key_id": "xyz", "payload": ""}, headers=s.h(s.admin))
    assert r.status_code == 400
    r = s.client.post("/balena/gpg/sign", json={"key_id": fpr, "payload": "", "x": 1}, headers=s.h(s.admin))
    assert r.status_code == 400
    r = s.client.post("/balena/gpg/sign", json={"key_id": fpr[-16:], "payload": ""}, headers=s.h(s.admin))
    assert r.status_code == 200  # the long key id is an alias too
