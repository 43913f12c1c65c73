"""End to end over a real uvicorn on 127.0.0.1: publish, search, fetch with integrity checks, signatures verified
with the local trust store (never with anything the registry serves), and mirror bundles for air-gapped sites."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from signery.errors import ConflictError, NotFoundError, Reason, TamperedError, UnsafeArchiveError, VerificationError
from signery.formats import native
from signery.keys import FileSigner, generate_private_key
from signery.registry.client import RegistryClient, fetch_package, publish_package, search_packages
from signery.registry.mirror import export_bundle, import_bundle, open_bundle
from signery.registry.store import RegistryStore
from signery.registry.tokens import AuthenticationError
from signery.trust import TrustSet, trusted_key_from_public

from .conftest import LiveRegistry, dify_package, serve_in_thread


@pytest.fixture(scope="module")
def alice() -> FileSigner:
    return FileSigner(generate_private_key("ed25519"), name="alice")


@pytest.fixture(scope="module")
def trust(alice: FileSigner) -> TrustSet:
    return TrustSet([trusted_key_from_public(alice.public_key(), name="alice")])


def signed_package(tmp: Path, signer: FileSigner, name: str = "demo", version: str = "1.0.0") -> tuple[Path, Path]:
    pkg = dify_package(tmp, name, version)
    return pkg, native.sign(pkg, signer, detached=True)


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_publish_fetch_verify(live: LiveRegistry, alice: FileSigner, trust: TrustSet, tmp_path: Path) -> None:
    pkg, sig = signed_package(tmp_path, alice)
    index, created = publish_package(live.url, pkg, token=live.token, signatures=[sig])
    assert created and index.ref == "demo@1.0.0"
    publish_package(live.url, dify_package(tmp_path / "v2", "demo", "1.1.0"), token=live.token)
    found = search_packages(live.url, "dem")
    assert [(p.name, p.latest, p.signed) for p in found] == [("demo", "1.1.0", False)]

    got = fetch_package(live.url, "demo", "1.0.0", tmp_path / "dl")
    assert got.path.read_bytes() == pkg.read_bytes() and got.sha256 == index.sha256
    assert [p.name for p in got.signatures] == [sig.name]
    assert native.verify(got.path, trust=trust, signature=got.signatures[0]).raise_for_status().verified
    assert listing(tmp_path / "dl") == sorted([pkg.name, sig.name])  # no temporary files left

    latest = fetch_package(live.url, "demo", None, tmp_path / "latest")
    assert latest.version == "1.1.0" and latest.signatures == []  # unsigned: the caller sees no signature at all


def test_signature_for_another_package_does_not_verify(
    live: LiveRegistry, alice: FileSigner, trust: TrustSet, tmp_path: Path
) -> None:
    _, other_sig = signed_package(tmp_path / "o", alice, "other")
    pkg = dify_package(tmp_path, "demo")
    swapped = tmp_path / f"{pkg.name}.signery.json"
    swapped.write_bytes(other_sig.read_bytes())
    publish_package(live.url, pkg, token=live.token, signatures=[swapped])  # the registry does not judge
    got = fetch_package(live.url, "demo", "1.0.0", tmp_path / "dl")
    result = native.verify(got.path, trust=trust, signature=got.signatures[0])
    assert not result.verified and result.reason == Reason.TAMPERED
    with pytest.raises(VerificationError):
        result.raise_for_status()


def test_untrusted_signer_is_not_trusted(live: LiveRegistry, trust: TrustSet, tmp_path: Path) -> None:
    mallory = FileSigner(generate_private_key("ed25519"), name="mallory")
    pkg, sig = signed_package(tmp_path, mallory)
    publish_package(live.url, pkg, token=live.token, signatures=[sig])
    got = fetch_package(live.url, "demo", None, tmp_path / "dl")
    assert native.verify(got.path, trust=trust, signature=got.signatures[0]).reason == Reason.UNKNOWN_KEY


def _publish_signed(live: LiveRegistry, tmp: Path, alice: FileSigner) -> tuple[Path, Path, str]:
    pkg, sig = signed_package(tmp, alice)
    index, _ = publish_package(live.url, pkg, token=live.token, signatures=[sig])
    return pkg, sig, index.sha256


def test_blob_swapped_on_server_disk(live: LiveRegistry, alice: FileSigner, tmp_path: Path) -> None:
    _, _, sha = _publish_signed(live, tmp_path, alice)
    blob = live.store.blobs.path(sha)
    data = bytearray(blob.read_bytes())
    data[-30] ^= 0xFF  # same size, different bytes: only the hash can tell
    blob.write_bytes(bytes(data))
    dest = tmp_path / "dl"
    with pytest.raises(TamperedError) as err:
        fetch_package(live.url, "demo", "1.0.0", dest)
    assert "SHA-256" in err.value.message
    assert listing(dest) == []


def test_blob_truncated_on_server_disk(live: LiveRegistry, alice: FileSigner, tmp_path: Path) -> None:
    _, _, sha = _publish_signed(live, tmp_path, alice)
    blob = live.store.blobs.path(sha)
    blob.write_bytes(blob.read_bytes()[:100])
    with pytest.raises(TamperedError):
        fetch_package(live.url, "demo", "1.0.0", tmp_path / "dl")
    assert listing(tmp_path / "dl") == []


def test_signature_swapped_on_server_disk(live: LiveRegistry, alice: FileSigner, tmp_path: Path) -> None:
    _, sig, _ = _publish_signed(live, tmp_path, alice)
    _, other_sig = signed_package(tmp_path / "o", alice, "other")
    index = RegistryClient(live.url).version("demo", "1.0.0")
    other = other_sig.read_bytes()
    assert len(other) != index.signatures[0].size or other != sig.read_bytes()
    live.store.blobs.path(index.signatures[0].sha256).write_bytes(other)
    with pytest.raises(TamperedError):
        fetch_package(live.url, "demo", "1.0.0", tmp_path / "dl")
    assert listing(tmp_path / "dl") == []


class _Chunks(httpx.SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


def test_hostile_registry_index(tmp_path: Path) -> None:
    """A registry that answers for another package, or sends more bytes than announced, is caught by the client."""
    real = dify_package(tmp_path, "evil")
    body = real.read_bytes()
    import hashlib

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/packages/demo/1.0.0":
            doc = {"name": "evil", "version": "1.0.0", "filename": "x.zip", "sha256": "0" * 64, "size": 1}
            return httpx.Response(200, json=doc)
        if path == "/api/packages/demo/2.0.0":
            doc = {"name": "demo", "version": "2.0.0", "filename": "../../x.zip", "sha256": "0" * 64, "size": 1}
            return httpx.Response(200, json=doc)
        if path == "/api/packages/demo/3.0.0":
            sha = hashlib.sha256(body[:10]).hexdigest()
            return httpx.Response(
                200, json={"name": "demo", "version": "3.0.0", "filename": "x.zip", "sha256": sha, "size": 10}
            )
        if path == "/api/packages/demo/3.0.0/download":
            return httpx.Response(200, stream=_Chunks(body))
        return httpx.Response(404, json={"error": {"reason": "malformed", "message": "no", "subject": None}})

    with RegistryClient("http://hostile.invalid", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(TamperedError):
            client.fetch("demo", "1.0.0", tmp_path / "a")
        with pytest.raises(Exception) as err:
            client.fetch("demo", "2.0.0", tmp_path / "b")
        assert err.value.__class__.__name__ == "MalformedError"
        with pytest.raises(TamperedError) as err2:
            client.fetch("demo", "3.0.0", tmp_path / "c")
        assert "more than" in err2.value.message
        with pytest.raises(NotFoundError):
            client.fetch("demo", "4.0.0", tmp_path / "d")
    assert listing(tmp_path / "c") == []


def test_client_errors_carry_reasons(live: LiveRegistry, alice: FileSigner, tmp_path: Path) -> None:
    pkg, sig, _ = _publish_signed(live, tmp_path, alice)
    with pytest.raises(AuthenticationError):
        publish_package(live.url, pkg, token="sgy_nope", signatures=[sig])
    rebuilt = dify_package(tmp_path / "r", "demo", "1.0.0", extra="x")
    with pytest.raises(ConflictError):
        publish_package(live.url, rebuilt, token=live.token)
    with pytest.raises(NotFoundError):
        fetch_package(live.url, "missing", None, tmp_path / "dl")
    with pytest.raises(Exception) as err:
        fetch_package("http://127.0.0.1:9", "demo", None, tmp_path / "dl")  # nothing listens on the discard port
    assert err.value.__class__.__name__ == "EnvironmentFailure"


def test_mirror_round_trip(
    live: LiveRegistry, store: RegistryStore, alice: FileSigner, trust: TrustSet, tmp_path: Path
) -> None:
    _publish_signed(live, tmp_path, alice)
    publish_package(live.url, dify_package(tmp_path / "t", "tool", "0.1.0"), token=live.token)
    bundle = tmp_path / "bundle.tar"
    exported = export_bundle(live.url, [("demo", None), ("tool", "0.1.0"), ("demo", "1.0.0")], bundle)
    assert [ix.ref for ix in exported] == ["demo@1.0.0", "tool@0.1.0"]

    got = open_bundle(bundle, "demo", None, tmp_path / "offline")
    assert native.verify(got.path, trust=trust, signature=got.signatures[0]).verified

    # Import into a second, empty registry (same database server kind, fresh data) with signatures intact.
    from signery.registry.app import create_app
    from signery.registry.settings import RegistrySettings

    other = RegistryStore(RegistrySettings(data_dir=tmp_path / "other"))
    url, stop = serve_in_thread(create_app(other.settings, store=other))
    try:
        token = other.create_token("importer")[1]
        results = import_bundle(bundle, url, token=token)
        assert [(ix.ref, created) for ix, created in results] == [("demo@1.0.0", True), ("tool@0.1.0", True)]
        assert import_bundle(bundle, url, token=token)[0][1] is False  # idempotent
        again = fetch_package(url, "demo", "1.0.0", tmp_path / "after")
        assert native.verify(again.path, trust=trust, signature=again.signatures[0]).verified
    finally:
        stop()
        other.close()


def _bundle(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _index(name: str, data: bytes) -> bytes:
    import hashlib

    entry = {"name": name, "version": "1.0.0", "filename": "p.zip", "sha256": hashlib.sha256(data).hexdigest()}
    return json.dumps({"format": "signery-bundle/1", "packages": [{**entry, "size": len(data)}]}).encode()


def test_bundle_attacks(tmp_path: Path) -> None:
    data = b"package bytes"
    link = tarfile.TarInfo("packages/demo/1.0.0/p.zip")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    cases = {
        "symlink": [(tarfile.TarInfo("index.json"), _index("demo", data)), (link, None)],
        "traversal": [(tarfile.TarInfo("index.json"), _index("demo", data)), (tarfile.TarInfo("../evil"), b"x")],
        "duplicate": [
            (tarfile.TarInfo("index.json"), _index("demo", data)),
            (tarfile.TarInfo("packages/demo/1.0.0/p.zip"), data),
            (tarfile.TarInfo("packages/demo/1.0.0/p.zip"), b"other"),
        ],
    }
    for why, members in cases.items():
        with pytest.raises(UnsafeArchiveError):
            open_bundle(_bundle(tmp_path / f"{why}.tar", members), "demo", None, tmp_path / why)
        assert listing(tmp_path / why) == []

    tampered = _bundle(
        tmp_path / "tampered.tar",
        [
            (tarfile.TarInfo("index.json"), _index("demo", data)),
            (tarfile.TarInfo("packages/demo/1.0.0/p.zip"), b"X" * len(data)),
        ],
    )
    with pytest.raises(TamperedError):
        open_bundle(tampered, "demo", "1.0.0", tmp_path / "t")
    assert listing(tmp_path / "t") == []
    missing = _bundle(tmp_path / "missing.tar", [(tarfile.TarInfo("index.json"), _index("demo", data))])
    with pytest.raises(TamperedError):
        open_bundle(missing, "demo", "1.0.0", tmp_path / "m")
    with pytest.raises(NotFoundError):
        open_bundle(missing, "other", None, tmp_path / "m")
