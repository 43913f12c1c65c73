"""The key store's parts: verification never opens a private key, the per-process cache, the one key model."""

from __future__ import annotations

import base64
import hashlib
import os

from service_kit import Service

from signery.keys import FileSigner, PrivateKey
from signery.service.keys import lifecycle, signing
from signery.service.keys.cache import KeyCache
from signery.service.keys.models import KeyVersion, SignItem
from signery.service.schemas import KeyPublic
from signery.service.settings import MasterKey


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CountingCache(KeyCache):
    """A real key cache that records every private key it is asked to open."""

    def __init__(self, master: MasterKey) -> None:
        super().__init__(master)
        self.opened: list[tuple[str, int]] = []

    def signer(self, version: KeyVersion) -> tuple[PrivateKey, FileSigner]:
        self.opened.append((version.name, version.version))
        return super().signer(version)


def _create(svc: Service, name: str, type_: str) -> dict[str, object]:
    r = svc.client.post("/v1/keys", json={"name": name, "type": type_}, headers=svc.h(svc.admin))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_verify_never_opens_a_private_key(service: Service) -> None:
    h = service.h(service.admin)
    message, digest = b"statement", hashlib.sha256(b"artifact").digest()
    signed = {}
    for name, type_ in (("ed", "ed25519"), ("ec", "ecdsa-p256"), ("rsa", "rsa-2048")):
        _create(service, name, type_)
        r = service.client.post(f"/v1/keys/{name}/rotate", headers=h)  # two versions: verify tries both
        assert r.status_code == 200
        body = {"message": b64(message)} if type_ == "ed25519" else {"digest": b64(digest)}
        r = service.client.post(f"/v1/keys/{name}/sign", json={**body, "version": 1}, headers=h)
        assert r.status_code == 200, r.text
        signed[name] = (body, r.json()["signature"])
    # From here on the process's cache holds a master key that opens nothing, and counts what it is asked to open.
    state = service.app.state.service
    counting = CountingCache(MasterKey(os.urandom(32)))
    state.keys = counting
    for name, (body, signature) in signed.items():
        r = service.client.post(f"/v1/keys/{name}/verify", json={**body, "signature": signature}, headers=h)
        assert r.status_code == 200 and r.json() == {"valid": True, "key_id": r.json()["key_id"], "version": 1}
        batch = [{**body, "signature": signature, "version": 1}, {**body, "signature": b64(b"\0" * 64)}]
        r = service.client.post(f"/v1/keys/{name}/verify", json={"batch": batch}, headers=h)
        assert [v["valid"] for v in r.json()["batch_results"]] == [True, False]
    assert counting.opened == [] and counting.unsealed_count == 0
    # Signing does go through this cache, which cannot open the sealed key with the wrong master key.
    r = service.client.post("/v1/keys/ed/sign", json={"message": b64(message)}, headers=h)
    assert r.status_code == 503 and r.json()["error"]["reason"] == "config-error"
    assert counting.opened == [("ed", 2)] and counting.unsealed_count == 0


def test_verify_takes_public_keys_only(sqlite_service: Service) -> None:
    """The library function has no way to open a key: it is given the key's description and nothing else."""
    svc = sqlite_service
    _create(svc, "k", "ecdsa-p384")
    cache = KeyCache(svc.master)
    with svc.db.read_session() as session:
        key = lifecycle.get(session, "k")
    item = SignItem(message=b"m")
    (sig,), _ = signing.sign(cache, key, [item], caller="test")
    assert not isinstance(sig, Exception) and cache.unsealed_count == 1
    verdicts, events = signing.verify(key, [(item, sig.signature), (item, b"bad")], caller="test")
    assert [getattr(v, "valid", None) for v in verdicts] == [True, False]
    assert [e.result for e in events] == ["valid", "invalid"]


def test_one_model_from_database_to_response(sqlite_service: Service) -> None:
    svc = sqlite_service
    created = _create(svc, "k", "ed25519")
    with svc.db.read_session() as session:
        key = lifecycle.get(session, "k")
    version = key.versions[1]
    assert KeyPublic.of(key).model_dump() == created == svc.client.get("/v1/keys/k").json()
    assert version.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert "sealed" not in repr(version) and version.sealed.ciphertext.hex() not in repr(key)


def test_cache_forgets_unsealed_keys_and_never_mixes_a_recreated_key(sqlite_service: Service) -> None:
    svc = sqlite_service
    h = svc.h(svc.admin)
    first = _create(svc, "k", "ed25519")
    cache = svc.app.state.service.keys
    assert svc.client.post("/v1/keys/k/sign", json={"message": b64(b"x")}, headers=h).status_code == 200
    assert cache.unsealed_count == 1 and cache.fresh("k") is not None
    assert cache.fresh("k", version=2) is None  # a version it does not know sends the caller to the database
    assert svc.client.post("/v1/keys/k/config", json={"deletion_allowed": True}, headers=h).status_code == 200
    assert svc.client.delete("/v1/keys/k", headers=h).status_code == 204
    assert cache.unsealed_count == 0 and cache.fresh("k") is None
    second = _create(svc, "k", "ed25519")
    r = svc.client.post("/v1/keys/k/sign", json={"message": b64(b"x")}, headers=h)
    assert r.json()["key_id"] == second["versions"][0]["key_id"] != first["versions"][0]["key_id"]  # type: ignore[index]
