"""The HTTP API through TestClient, on SQLite and PostgreSQL: publishing rules, reads, downloads, attacks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signery.registry.app import create_app
from signery.registry.settings import RegistrySettings
from signery.registry.store import RegistryStore

from .conftest import dify_package, make_zip, mattermost_bundle


def upload(api: TestClient, auth: dict[str, str], data: bytes) -> str:
    r = api.post("/api/uploads", content=data, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    return str(r.json()["sha256"])


def publish(
    api: TestClient,
    auth: dict[str, str],
    pkg: Path,
    sigs: dict[str, bytes] | None = None,
    **extra: Any,
) -> Any:
    body: dict[str, Any] = {"package": upload(api, auth, pkg.read_bytes()), "filename": pkg.name, **extra}
    body["signatures"] = [{"filename": f, "sha256": upload(api, auth, b)} for f, b in (sigs or {}).items()]
    return api.post("/api/packages", json=body, headers=auth)


def error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["reason"]


def stored_files(store: RegistryStore) -> list[Path]:
    return sorted(p for p in store.settings.data_dir.rglob("*") if p.is_file() and "blobs" in p.parts)


def staged_files(store: RegistryStore) -> list[Path]:
    return list(store.settings.staging_dir.iterdir())


def test_publish_read_search_download(api: TestClient, auth: dict[str, str], tmp_path: Path) -> None:
    pkg = dify_package(tmp_path, "demo", "1.0.0")
    r = publish(api, auth, pkg, {f"{pkg.name}.signery.json": b'{"sig": 1}'})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    assert doc["signature_path"] == f"/api/packages/demo/1.0.0/signatures/{pkg.name}.signery.json"
    assert publish(api, auth, dify_package(tmp_path, "demo", "1.1.0-rc.1")).status_code == 201
    assert publish(api, auth, mattermost_bundle(tmp_path)).status_code == 201

    assert api.get("/api/packages/demo/1.0.0").json() == doc
    assert api.get("/api/packages/DEMO/1.0.0").json()["name"] == "demo"
    summary = api.get("/api/packages/demo").json()
    assert summary == {"name": "demo", "latest": "1.0.0", "signed": True, "versions": ["1.1.0-rc.1", "1.0.0"]}
    assert [p["name"] for p in api.get("/api/packages", params={"q": "ACME"}).json()] == ["com.acme.demo"]
    assert [p["name"] for p in api.get("/api/packages").json()] == ["com.acme.demo", "demo"]
    assert api.get("/api/packages", params={"q": "%"}).json() == []  # LIKE wildcards are literal

    r = api.get(doc["download_path"])
    assert r.status_code == 200 and r.content == pkg.read_bytes()
    assert r.headers["etag"] == f'"{doc["sha256"]}"'
    assert api.get(doc["download_path"], headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    part = api.get(doc["download_path"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == pkg.read_bytes()[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{doc['size']}"
    assert api.get(doc["download_path"], headers={"Range": "bytes=999999-"}).status_code == 416
    assert api.get(doc["signature_path"]).content == b'{"sig": 1}'
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/docs").status_code == 200
    assert "/api/packages/{name}/{version}" in api.get("/openapi.json").json()["paths"]


def test_version_is_immutable_but_signatures_can_be_added(
    api: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    pkg = dify_package(tmp_path, "demo", "1.0.0")
    assert publish(api, auth, pkg).status_code == 201
    assert publish(api, auth, pkg).status_code == 200  # same bytes again: idempotent
    other = dify_package(tmp_path, "demo", "1.0.0", extra="-rebuilt")
    assert error(publish(api, auth, other)) == (409, "policy-violation")
    # Build metadata does not make a new version slot.
    rebuilt = make_zip(tmp_path / "b.zip", {"manifest.yaml": "name: demo\nversion: 1.0.0+build.7\n"})
    assert error(publish(api, auth, rebuilt)) == (409, "policy-violation")
    r = publish(api, auth, pkg, {"demo.zip.sig": b"countersig"})
    assert r.status_code == 200 and [s["filename"] for s in r.json()["signatures"]] == ["demo.zip.sig"]
    r = publish(api, auth, pkg, {"demo.zip.asc": b"author"})
    assert [s["filename"] for s in r.json()["signatures"]] == ["demo.zip.sig", "demo.zip.asc"]
    # A different signature under a taken file name would silently replace what clients fetched before.
    assert error(publish(api, auth, pkg, {"demo.zip.sig": b"other"})) == (409, "policy-violation")
    assert api.get("/api/packages/demo/1.0.0").json()["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()


def test_require_signatures(store: RegistryStore, auth: dict[str, str], tmp_path: Path) -> None:
    settings = RegistrySettings(data_dir=store.settings.data_dir, require_signatures=True)
    with TestClient(create_app(settings, store=RegistryStore(settings, engine=store.engine))) as api:
        pkg = dify_package(tmp_path)
        assert error(publish(api, auth, pkg)) == (422, "unsigned")
        assert stored_files(store) == [] and staged_files(store) == []
        assert publish(api, auth, pkg, {"demo.sig": b"sig"}).status_code == 201


def test_bad_tokens_refused(api: TestClient, store: RegistryStore, auth: dict[str, str]) -> None:
    info, good = store.create_token("alice")
    tid = good.split("_")[1]
    wrong_secret = f"sgy_{tid}_{'A' * 43}"
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": f"Bearer {wrong_secret}"},
        {"Authorization": f"Bearer sgy_{'0' * 16}_{'A' * 43}"},
        {"Authorization": "Bearer " + "x" * 10_000},
    ):
        r = api.post("/api/uploads", content=b"data", headers=headers)
        assert error(r) == (401, "policy-violation"), headers
        assert r.json()["error"]["message"] in ("invalid token", "a publisher token is required")
    assert api.post("/api/uploads", content=b"data", headers={"Authorization": f"Bearer {good}"}).status_code == 201
    store.revoke_token("alice")
    assert api.post("/api/uploads", content=b"x", headers={"Authorization": f"Bearer {good}"}).status_code == 401
    assert [t.name for t in store.list_tokens() if t.revoked_at] == ["alice"]
    assert info.scopes == ("*",)
    assert all(good not in repr(t.to_dict()) for t in store.list_tokens())


def test_token_scope(api: TestClient, store: RegistryStore, tmp_path: Path) -> None:
    _, scoped = store.create_token("acme-ci", scopes=["acme-*"])
    auth = {"Authorization": f"Bearer {scoped}"}
    assert publish(api, auth, dify_package(tmp_path, "acme-tool")).status_code == 201
    assert error(publish(api, auth, dify_package(tmp_path, "demo"))) == (403, "policy-violation")
    assert [p["name"] for p in api.get("/api/packages").json()] == ["acme-tool"]


def test_package_claiming_another_name(api: TestClient, auth: dict[str, str], tmp_path: Path) -> None:
    pkg = dify_package(tmp_path, "evil")
    assert error(publish(api, auth, pkg, name="demo", version="1.0.0")) == (403, "policy-violation")
    # The impersonation check is case-insensitive, and so is uniqueness: DEMO cannot shadow demo.
    assert publish(api, auth, dify_package(tmp_path, "demo")).status_code == 201
    shadow = make_zip(tmp_path / "s.zip", {"manifest.yaml": "name: DEMO\nversion: 1.0.0\n"})
    assert error(publish(api, auth, shadow)) == (409, "policy-violation")


@pytest.mark.parametrize(
    "files",
    [
        {"manifest.yaml": "name: demo\nversion: 1.0.0\n", "../../../tmp/evil": "x"},
        {"manifest.yaml": "name: demo\nversion: 1.0.0\n", "/abs/evil": "x"},
        {"manifest.yaml": "name: demo\nversion: 1.0.0\n", "a\\..\\..\\evil": "x"},
    ],
)
def test_unsafe_uploads_refused_and_nothing_stored(
    api: TestClient, store: RegistryStore, auth: dict[str, str], tmp_path: Path, files: dict[str, str]
) -> None:
    r = publish(api, auth, make_zip(tmp_path / "evil.zip", files))
    assert error(r) == (422, "unsafe-archive")
    assert stored_files(store) == [] and staged_files(store) == []
    assert api.get("/api/packages").json() == []


def test_oversize_upload_refused(store: RegistryStore, auth: dict[str, str]) -> None:
    settings = RegistrySettings(data_dir=store.settings.data_dir, max_upload_size=1000)
    with TestClient(create_app(settings, store=RegistryStore(settings, engine=store.engine))) as api:
        assert error(api.post("/api/uploads", content=b"x" * 1001, headers=auth)) == (413, "malformed")

        def body() -> Any:  # no Content-Length: the limit must hold while streaming
            for _ in range(10):
                yield b"y" * 500

        assert error(api.post("/api/uploads", content=body(), headers=auth)) == (413, "malformed")
        assert staged_files(store) == []


def test_oversize_signature_refused(
    api: TestClient, store: RegistryStore, auth: dict[str, str], tmp_path: Path
) -> None:
    r = publish(api, auth, dify_package(tmp_path), {"demo.sig": b"s" * ((1 << 20) + 1)})
    assert error(r) == (400, "malformed")
    assert stored_files(store) == []


@pytest.mark.parametrize("filename", ["../../evil.sig", "a/b.sig", ".hidden.sig", "x.exe"])
def test_bad_signature_names_refused(api: TestClient, auth: dict[str, str], tmp_path: Path, filename: str) -> None:
    assert publish(api, auth, dify_package(tmp_path), {filename: b"sig"}).status_code == 400


def test_bad_input(api: TestClient, auth: dict[str, str], tmp_path: Path) -> None:
    assert error(api.get("/api/packages/demo/not-semver")) == (400, "malformed")
    assert error(api.get("/api/packages/a%20b")) == (400, "malformed")
    assert api.get("/api/packages/..%2f..%2fetc%2fpasswd/1.0.0/download").status_code == 404
    assert api.get("/api/packages/nope").status_code == 404
    assert api.get("/api/packages/nope/1.0.0/download").status_code == 404
    assert error(api.post("/api/packages", json={"package": "zz"}, headers=auth))[0] == 400
    r = api.post("/api/packages", json={"package": "0" * 64, "filename": "x.zip"}, headers=auth)
    assert r.status_code == 404  # never uploaded
    opaque = tmp_path / "tool.bin"
    opaque.write_bytes(b"\x00\x01")
    assert error(publish(api, auth, opaque)) == (400, "malformed")  # no manifest and no --name/--version
    assert publish(api, auth, opaque, name="tool", version="2.0.0").status_code == 201
    assert api.get("/api/packages", params={"q": "x" * 500}).status_code == 400


def test_blob_damaged_on_disk(api: TestClient, store: RegistryStore, auth: dict[str, str], tmp_path: Path) -> None:
    doc = publish(api, auth, dify_package(tmp_path)).json()
    blob = store.blobs.path(doc["sha256"])
    blob.write_bytes(blob.read_bytes()[:-5])  # truncated behind the registry's back
    assert error(api.get(doc["download_path"])) == (500, "tampered")
    blob.unlink()
    assert error(api.get(doc["download_path"])) == (500, "tampered")


def test_oversize_json_body_refused_before_it_is_buffered(api: TestClient) -> None:
    # The publish body is parsed before the token is checked, so an anonymous client could make the server hold
    # an arbitrarily large JSON document in memory; it is refused by size instead, declared or streamed.
    huge = b'{"package": "' + b"a" * (8 << 20) + b'"}'
    r = api.post("/api/packages", content=huge, headers={"Content-Type": "application/json"})
    assert error(r) == (413, "malformed")

    def chunked() -> Any:
        for _ in range(8):
            yield b" " * (1 << 20)

    r = api.post("/api/packages", content=chunked(), headers={"Content-Type": "application/json"})
    assert error(r) == (413, "malformed")
