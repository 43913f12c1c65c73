"""The signed index through the real CLI: ``signery install --registry`` refuses yesterday's index, an expired one,
one signed by another key, and one listing other bytes than those served, each with its reason, installing nothing
and leaving the previous install intact. Packages are still verified against the local trust store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from signery.formats import native
from signery.keys import FileSigner, generate_private_key, save_key_pair
from signery.registry.app import create_app
from signery.registry.index import VersionIndex
from signery.registry.settings import RegistrySettings
from signery.registry.signed_index import sign_index, verify_index
from signery.registry.store import RegistryStore

from .conftest import LiveRegistry, dify_package, serve_in_thread
from .hostkit import publish, run


class SwapIndex:
    """ASGI wrapper: while ``body`` is set, ``/api/index`` answers with it (a registry replaying or forging)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.body is not None and scope["type"] == "http" and scope["path"] == "/api/index":
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)


@dataclass
class Setup:
    live: LiveRegistry
    swap: SwapIndex
    index_key: FileSigner
    alice: FileSigner
    plugins: Path
    tmp: Path


@pytest.fixture()
def setup(tmp_path: Path, home: Path) -> Iterator[Setup]:
    index_private, alice_private = generate_private_key("ed25519"), generate_private_key("ed25519")
    index_key, alice = FileSigner(index_private, name="index"), FileSigner(alice_private, name="alice")
    save_key_pair(tmp_path / "alice.private.pem", tmp_path / "alice.public.pem", alice_private)
    save_key_pair(tmp_path / "index.private.pem", tmp_path / "index.public.pem", index_private)
    store = RegistryStore(RegistrySettings(data_dir=tmp_path / "data", index_expiry=timedelta(hours=1)))
    token = store.create_token("ci")[1]
    swap = SwapIndex(create_app(store.settings, store=store, index_signer=index_key))
    url, stop = serve_in_thread(swap)
    live = LiveRegistry(url, store, token)
    assert run("trust", "add", str(tmp_path / "alice.public.pem"), "--name", "alice").exit_code == 0
    trusted = run("registry", "trust-index", url, str(tmp_path / "index.public.pem"))
    assert trusted.exit_code == 0, trusted.output
    yield Setup(live, swap, index_key, alice, tmp_path / "plugins", tmp_path)
    stop()
    store.close()


def release(s: Setup, version: str) -> None:
    pkg = dify_package(s.tmp / version, version=version, extra=version)
    signed = native.sign(pkg, s.alice, claims={"name": "demo", "version": version})
    assert publish(s.live, signed).exit_code == 0


def install(s: Setup, spec: str) -> tuple[int, dict[str, Any]]:
    r = run("install", spec, "--registry", s.live.url, "--plugins-dir", str(s.plugins), "--json")
    out = r.output
    return r.exit_code, json.loads(out[out.index("\n{") + 1 :] if not out.startswith("{") else out)


def installed_version(s: Setup) -> str | None:
    doc = json.loads(run("plugins", "list", "--plugins-dir", str(s.plugins), "--json").output)
    items = doc["plugins"] if isinstance(doc, dict) else doc
    found = {p["name"]: p["version"] for p in items}
    return found.get("demo")


def forged(s: Setup, signer: FileSigner, *, version: int, now: datetime, **change: Any) -> bytes:
    packages = [s.live.store.get_version("demo", v) for v in ("1.0.0", "1.1.0")]
    packages = [VersionIndex.from_dict({**p.to_dict(), **change}) if p.version == "1.1.0" else p for p in packages]
    return sign_index(signer, packages, version=version, now=now, expiry=timedelta(hours=1))


def test_index_refusals_each_with_its_reason(setup: Setup) -> None:
    s = setup
    release(s, "1.0.0")
    yesterday = httpx.get(f"{s.live.url}/api/index").content
    old = verify_index(yesterday, trusted=[s.index_key.public_key()])
    assert [(p.name, p.version) for p in old.packages] == [("demo", "1.0.0")]
    code, doc = install(s, "demo")
    assert code == 0, doc
    release(s, "1.1.0")
    code, doc = install(s, "demo")  # the latest, resolved from the signed index
    assert code == 0, doc
    assert installed_version(s) == "1.1.0"
    current = verify_index(httpx.get(f"{s.live.url}/api/index").content, trusted=[s.index_key.public_key()])
    assert current.version > old.version

    # Yesterday's index, replayed: a rollback.
    s.swap.body = yesterday
    code, doc = install(s, "demo@1.0.0")
    assert (code, doc["reason"]) == (1, "policy-violation"), doc
    assert "rollback" in doc["message"] and installed_version(s) == "1.1.0"

    # An expired index (validly signed, but its validity has run out).
    s.swap.body = forged(s, s.index_key, version=current.version + 5, now=datetime.now(UTC) - timedelta(hours=2))
    code, doc = install(s, "demo@1.1.0")
    assert (code, doc["reason"]) == (1, "expired-key"), doc
    assert "expired" in doc["message"] and installed_version(s) == "1.1.0"

    # An index signed by a key this client does not trust for this registry.
    other = FileSigner(generate_private_key("ed25519"), name="other")
    s.swap.body = forged(s, other, version=current.version + 6, now=datetime.now(UTC))
    code, doc = install(s, "demo@1.1.0")
    assert (code, doc["reason"]) == (1, "unknown-key"), doc
    assert installed_version(s) == "1.1.0"

    # A validly signed index listing other bytes than the registry serves: tampered, nothing fetched or installed.
    s.swap.body = forged(s, s.index_key, version=current.version + 7, now=datetime.now(UTC), sha256="ab" * 32)
    code, doc = install(s, "demo@1.1.0")
    assert (code, doc["reason"]) == (1, "tampered"), doc
    assert installed_version(s) == "1.1.0"
    assert not list((s.plugins / ".signery").glob("staging-*")) if (s.plugins / ".signery").exists() else True

    # The genuine index again: the last version seen is now the forged one's (it was validly signed), so the
    # registry's own, older, index is refused as a rollback until it re-signs above it.
    s.swap.body = None
    code, doc = install(s, "demo@1.1.0")
    assert (code, doc["reason"]) == (1, "policy-violation"), doc


def test_package_still_verified_against_local_trust(setup: Setup) -> None:
    s = setup
    pkg = dify_package(s.tmp / "mallory", version="3.0.0", extra="3.0.0")
    mallory = FileSigner(generate_private_key("ed25519"), name="mallory")
    assert publish(s.live, native.sign(pkg, mallory, claims={"name": "demo", "version": "3.0.0"})).exit_code == 0
    code, doc = install(s, "demo@3.0.0")  # the index is fine; the signer is not trusted locally
    assert (code, doc["reason"]) == (1, "unknown-key"), doc
    assert installed_version(s) is None


def test_index_versions_grow_and_survive_restarts(tmp_path: Path) -> None:
    key = FileSigner(generate_private_key("ed25519"), name="index")
    settings = RegistrySettings(data_dir=tmp_path / "data")
    store = RegistryStore(settings)
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, store=store, index_signer=key)) as api:
        first = verify_index(api.get("/api/index").content, trusted=[key.public_key()])
        again = verify_index(api.get("/api/index").content, trusted=[key.public_key()])
        assert again.version == first.version  # nothing changed: the same document
    with TestClient(create_app(settings, store=store, index_signer=key)) as api:
        token = store.create_token("ci")[1]
        pkg = dify_package(tmp_path)
        up = api.post("/api/uploads", content=pkg.read_bytes(), headers={"Authorization": f"Bearer {token}"})
        body = {"package": up.json()["sha256"], "filename": pkg.name}
        assert api.post("/api/packages", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 201
        after = verify_index(api.get("/api/index").content, trusted=[key.public_key()])
        assert after.version == first.version + 1 and [p.name for p in after.packages] == ["demo"]
    with TestClient(create_app(settings, store=store)) as api:
        assert api.get("/api/index").status_code == 404  # no index key: no index
    store.close()


def test_mirror_bundle_carries_the_signed_index(setup: Setup) -> None:
    from signery.errors import TamperedError
    from signery.registry.mirror import Bundle

    s = setup
    release(s, "1.0.0")
    bundle = s.tmp / "bundle.tar"
    r = run("mirror", "export", "demo@1.0.0", "--registry", s.live.url, "--out", str(bundle))
    assert r.exit_code == 0, r.output
    with Bundle(bundle) as b:
        assert b.signed_index is not None
        signed = b.check_signed_index([s.index_key.public_key()])
        assert [(p.name, p.version) for p in signed.packages] == [("demo", "1.0.0")]
    # A bundle whose index lists other bytes than its signed index: tampered.
    release(s, "1.1.0")
    s.swap.body = forged(s, s.index_key, version=99, now=datetime.now(UTC), sha256="cd" * 32)
    r = run("mirror", "export", "demo@1.1.0", "--registry", s.live.url, "--out", str(bundle))
    assert r.exit_code == 0, r.output
    with Bundle(bundle) as b, pytest.raises(TamperedError):
        b.check_signed_index([s.index_key.public_key()])


def test_install_from_a_bundle_checks_its_signed_index_with_index_key(setup: Setup) -> None:
    s = setup
    release(s, "1.0.0")
    bundle = s.tmp / "bundle.tar"
    assert run("mirror", "export", "demo@1.0.0", "--registry", s.live.url, "--out", str(bundle)).exit_code == 0
    base = ["install", "demo", "--from", str(bundle), "--plugins-dir", str(s.plugins), "--json"]
    # signed by another key than the one named: refused, nothing installed
    save_key_pair(s.tmp / "other.private.pem", s.tmp / "other.public.pem", generate_private_key("ed25519"))
    r = run(*base, "--index-key", str(s.tmp / "other.public.pem"))
    assert r.exit_code == 1, r.output
    assert json.loads(r.output)["reason"] == "unknown-key" and installed_version(s) is None
    r = run(*base, "--index-key", str(s.tmp / "index.public.pem"))
    assert r.exit_code == 0, r.output
    assert installed_version(s) == "1.0.0"
    # --index-key means nothing without a bundle
    r = run("install", "demo", "--registry", s.live.url, "--index-key", str(s.tmp / "index.public.pem"))
    assert r.exit_code == 2
