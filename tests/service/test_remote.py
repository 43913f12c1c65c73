"""The client side against a real server process: RemoteSigner in every format, the remote and server CLIs."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import ServerProcess, free_port, init_service, run_cli, running, start_server

from signery import openpgp
from signery.errors import ConfigError, EnvironmentFailure, UsageError
from signery.formats import dify, native
from signery.formats import openpgp as openpgp_format
from signery.keys import Signer, key_id, verify_signature
from signery.remote import RemoteOpenPGPSigner, RemoteSigner, remote_keys, remote_public_key
from signery.trust import TrustSet, trusted_key_from_public
from support import require_tool


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, Path]]:
    home = tmp_path_factory.mktemp("remote-home")
    url = f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    srv = start_server(home, url)
    h = {"X-API-Key": admin}
    for body in (
        {"name": "ed", "type": "ed25519"},
        {"name": "rsa", "type": "rsa-2048"},
        {"name": "p256", "type": "ecdsa-p256"},
        {"name": "pgp-ed", "type": "openpgp-ed25519", "uid": "Build <build@example.org>"},
        {"name": "pgp-rsa", "type": "openpgp-rsa-3072", "uid": "Release <release@example.org>"},
    ):
        assert httpx.post(f"{srv.url}/v1/keys", json=body, headers=h, timeout=60).status_code == 201
    try:
        yield srv, admin, home
    finally:
        srv.stop()


def test_remote_signer_is_a_signer(server: tuple[ServerProcess, str, Path]) -> None:
    srv, admin, _ = server
    signer = RemoteSigner(srv.url, admin, "p256")
    assert isinstance(signer, Signer)
    assert signer.key_id == key_id(signer.public_key())
    sig = signer.sign(b"hello")
    verify_signature(signer.public_key(), sig, b"hello")
    digest = hashlib.sha384(b"big file").digest()
    sig = signer.sign_digest(digest, hash_name="sha384")
    verify_signature(signer.public_key(), sig, digest, hash_name="sha384", prehashed=True)
    with pytest.raises(UsageError, match="65536"):
        signer.sign(b"x" * (64 * 1024 + 1))
    ed = RemoteSigner(srv.url, admin, "ed")
    with pytest.raises(UsageError, match="Ed25519"):
        ed.sign_digest(hashlib.sha256(b"x").digest(), hash_name="sha256")
    signer.close()
    ed.close()


def test_native_format_with_a_remote_key(server: tuple[ServerProcess, str, Path], tmp_path: Path) -> None:
    srv, admin, _ = server
    subject = tmp_path / "tool.tar.gz"
    subject.write_bytes(os.urandom(100_000))
    signer = RemoteSigner(srv.url, admin, "ed")
    out = native.sign(subject, signer)
    trust = TrustSet([trusted_key_from_public(signer.public_key(), name="service-ed")])
    result = native.verify(subject, trust=trust, signature=out)
    assert result.verified, result


def test_dify_format_with_a_remote_rsa_key(server: tuple[ServerProcess, str, Path], tmp_path: Path) -> None:
    srv, admin, _ = server
    pkg = tmp_path / "plugin.difypkg"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("manifest.yaml", "name: demo\nversion: 0.0.1\n")
        zf.writestr("main.py", "print('hi')\n")
    signer = RemoteSigner(srv.url, admin, "rsa")
    signed = dify.sign(pkg, signer)
    trust = TrustSet([trusted_key_from_public(signer.public_key(), name="service-rsa")])
    assert dify.verify(signed, trust=trust).verified


@pytest.mark.parametrize("name", ["pgp-ed", "pgp-rsa"])
def test_openpgp_detached_signature_checked_by_gpg(
    server: tuple[ServerProcess, str, Path], tmp_path: Path, name: str
) -> None:
    gpg = require_tool("gpg")
    srv, admin, _ = server
    data = tmp_path / "release.tar"
    data.write_bytes(os.urandom(50_000))
    signer = RemoteOpenPGPSigner(srv.url, admin, name)
    assert isinstance(signer, openpgp.OpenPGPSigner)
    sig = openpgp_format.sign(data, signer)
    cert = remote_public_key(srv.url, name).openpgp_certificate
    assert cert is not None
    gnupghome = tmp_path / "gnupg"
    gnupghome.mkdir(mode=0o700)
    (tmp_path / "cert.asc").write_text(cert)
    subprocess.run(
        [gpg, "--homedir", str(gnupghome), "--batch", "--import", str(tmp_path / "cert.asc")],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [gpg, "--homedir", str(gnupghome), "--batch", "--status-fd", "1", "--verify", str(sig), str(data)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"VALIDSIG {signer.fingerprint.upper()}" in out.stdout


def test_client_failures_are_signery_errors(server: tuple[ServerProcess, str, Path]) -> None:
    srv, admin, home = server
    with pytest.raises(EnvironmentFailure, match="unreachable"):
        RemoteSigner(f"http://127.0.0.1:{free_port()}", admin, "ed").sign(b"x")
    with pytest.raises(ConfigError, match="401"):
        RemoteSigner(srv.url, "sgy_0000000000000000_" + "A" * 43, "ed").sign(b"x")
    with pytest.raises(UsageError, match="404"):
        RemoteSigner(srv.url, admin, "missing").sign(b"x")
    with pytest.raises(UsageError):
        RemoteSigner(srv.url, admin, "../etc")
    with pytest.raises(UsageError):
        RemoteSigner("file:///etc/passwd", admin, "ed")
    out = run_cli(
        "server",
        "api-key",
        "create",
        "--name",
        "ed-only",
        "--scope",
        "sign:ed",
        "--database-url",
        f"sqlite:///{home / 'service.db'}",
        home=home,
    )
    token = out.stdout.strip().splitlines()[-1]
    with pytest.raises(ConfigError, match="403"):
        RemoteSigner(srv.url, token, "p256").sign(b"x")
    assert RemoteSigner(srv.url, token, "ed").sign(b"x")


def test_a_lying_server_is_caught(server: tuple[ServerProcess, str, Path]) -> None:
    """A server (or a proxy) that returns another key's signature: the client checks every signature."""
    srv, admin, _ = server
    real = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        response = real.handle_request(request)
        response.read()
        if request.url.path.endswith("/sign"):
            body = response.json()
            body["signature"] = base64.b64encode(b"\x01" * 64).decode()
            return httpx.Response(200, json=body)
        return httpx.Response(response.status_code, content=response.content, headers=response.headers)

    signer = RemoteSigner(srv.url, admin, "ed", transport=httpx.MockTransport(handler))
    with pytest.raises(EnvironmentFailure, match="does not verify"):
        signer.sign(b"x")


def test_remote_cli(server: tuple[ServerProcess, str, Path]) -> None:
    srv, admin, home = server
    out = run_cli("remote", "keys", "--server", srv.url, "--json", home=home, env={"SIGNERY_API_KEY": admin})
    assert out.returncode == 0, out.stderr
    assert {k["name"] for k in json.loads(out.stdout)["keys"]} >= {"ed", "rsa", "pgp-ed"}
    out = run_cli("remote", "public-key", "rsa", "--server", srv.url, home=home)
    assert out.returncode == 0 and out.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    out = run_cli("remote", "public-key", "pgp-ed", "--server", srv.url, home=home)
    assert out.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    out = run_cli("remote", "keys", "--server", srv.url, home=home, env={"SIGNERY_API_KEY": ""})
    assert out.returncode == 2
    assert len(remote_keys(srv.url, admin)) >= 5


def test_server_admin_cli(server: tuple[ServerProcess, str, Path]) -> None:
    _, _, home = server
    db = ["--database-url", f"sqlite:///{home / 'service.db'}"]
    assert (home / "master.key").stat().st_mode & 0o777 == 0o600
    assert (home / "service.db").stat().st_mode & 0o777 == 0o600
    out = run_cli(
        "server", "api-key", "create", "--name", "ci", "--scope", "sign:release-*", "--expires", "30d", *db, home=home
    )
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1].startswith("sgy_")
    out = run_cli("server", "api-key", "list", "--json", *db, home=home)
    assert "ci" in {k["name"] for k in json.loads(out.stdout)["api_keys"]}
    assert "sgy_" not in out.stdout
    assert run_cli("server", "api-key", "revoke", "ci", *db, home=home).returncode == 0
    assert run_cli("server", "api-key", "create", "--name", "x", "--scope", "root", *db, home=home).returncode == 2
    out = run_cli("server", "audit", "verify", "--json", *db, home=home)
    assert out.returncode == 0 and json.loads(out.stdout)["ok"] is True
    out = run_cli("server", "migrate", *db, home=home)
    assert out.returncode == 0 and "0004 -> 0004" in out.stdout
    out = run_cli("server", "init", *db, home=home)
    assert out.returncode == 2 and "API keys already" in out.stderr


def test_a_flooding_server_is_cut_off() -> None:
    """A hostile server's endless response is refused once over the bound, never buffered whole."""
    from signery.remote import MAX_RESPONSE_BYTES, ServiceClient

    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 16 * MAX_RESPONSE_BYTES:
            sent += 1 << 20
            yield b" " * (1 << 20)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless(), headers={"Content-Type": "application/json"})

    client = ServiceClient("http://127.0.0.1:9", "sgy_key", transport=httpx.MockTransport(handler))
    with pytest.raises(EnvironmentFailure, match="oversized"):
        client.request("GET", "/v1/keys")
    assert sent <= MAX_RESPONSE_BYTES + (2 << 20)


def test_a_running_service_keeps_its_database_files_private(tmp_path: Path) -> None:
    """The database, its live SQLite journals (-wal, -shm) and the master key are never readable by others."""
    import stat

    home = tmp_path / "home"
    url = f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    with running(home, url) as server:
        made = httpx.post(
            f"{server.url}/v1/keys", json={"name": "k", "type": "ed25519"}, headers={"X-API-Key": admin}, timeout=30
        )
        assert made.status_code in (200, 201), made.text
        files = [p for p in home.rglob("*") if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files), "expected the server to hold a live WAL journal"
        for p in files:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode & 0o077 == 0, f"{p.name} has mode {oct(mode)}"
