"""meta-balena's calls replayed with curl and jq against a real ``signery server`` (tests/service/balena_replay.sh),
every artifact checked with the tools that check it (sbverify, osslsigncode, modinfo, openssl, gpgv, sqv,
sig-list-to-certs); then the refusals a build can meet: a wrong key (401), a key without the scope (403), an
unknown key id (404), a body over the limit (413, answered before the body is read)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from servers import ServerProcess, init_service, run_cli, start_server

from support import VECTORS, require_tool

SCRIPT = Path(__file__).with_name("balena_replay.sh")
TOOLS = ("curl", "jq", "sbverify", "osslsigncode", "modinfo", "openssl", "gpg", "gpgv", "sqv", "xxd")
TOOLS_EFI = ("sig-list-to-certs", "hash-to-efi-sig-list")
BOOTSTRAP = {
    "gpg": {"name_real": "balenaOS", "name_email": "security@balena.io", "name_comment": "GRUB"},
    "rsa": {},
    "hab": {"hab_type": "hab"},
    "ahab": {"hab_type": "ahab"},
    "certificates": {
        "pk": {"cert_id": "balenaos-pk", "subject": "/CN=balenaOS PK/"},
        "kek": {"cert_id": "balenaos-kek", "subject": "/CN=balenaOS KEK/"},
        "kmod": {"cert_id": "balenaos-kmod", "subject": "/CN=balenaOS kmod signing key/", "key_length": 3072},
    },
}


@dataclass
class Balena:
    server: ServerProcess
    api: str
    admin: str
    build: str  # an API key with sign:balena-* only
    ids: dict[str, str]


def _token(home: Path, url: str, name: str, scope: str) -> str:
    out = run_cli("server", "api-key", "create", "--database-url", url, "--name", name, "--scope", scope, home=home)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def balena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balena]:
    home = tmp_path_factory.mktemp("balena-home")
    url = f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    build = _token(home, url, "build", "sign:balena-*")
    server = start_server(home, url, workers=2)
    try:
        api = f"{server.url}/balena"
        r = httpx.post(f"{api}/bootstrap", json=BOOTSTRAP, headers={"X-API-Key": admin}, timeout=120)
        assert r.status_code == 200, r.text
        reply = r.json()
        ids = {
            "SIGN_GRUB_KEY_ID": reply["gpg"]["fingerprint"],
            "SIGN_KMOD_KEY_ID": "balenaos-kmod",
            "SIGN_EFI_PK_KEY_ID": "balenaos-pk",
            "SIGN_EFI_KEK_KEY_ID": "balenaos-kek",
            "SIGN_RSA_KEY_ID": reply["rsa"]["fingerprint"],
        }
        yield Balena(server, api, admin, build, ids)
    finally:
        server.stop()


def test_meta_balena_calls_replayed_and_verified(balena: Balena, tmp_path: Path) -> None:
    for tool in TOOLS + TOOLS_EFI:
        require_tool(tool)
    env = {
        **os.environ,
        **balena.ids,
        "SIGN_API": balena.api,
        "SIGN_API_KEY": balena.build,
        "VECTORS": str(VECTORS / "balena"),
        "WORK": str(tmp_path),
        "GNUPGHOME": str(tmp_path / "gnupg"),
    }
    (tmp_path / "gnupg").mkdir(mode=0o700)
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    for check in ("efi", "gpg", "kmod", "cert/sign", "rsa/sign", "secureboot", "wrong API key"):
        assert f"ok {check}" in out.stdout, out.stdout


def test_the_fingerprint_answers_in_any_case_and_by_long_key_id(balena: Balena) -> None:
    fpr = balena.ids["SIGN_GRUB_KEY_ID"]
    keys = {httpx.get(f"{balena.api}/gpg/key/{i}").json()["key"] for i in (fpr, fpr.lower(), fpr[-16:].lower())}
    assert len(keys) == 1 and next(iter(keys)).startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_scope_unknown_id_and_no_export(balena: Balena, tmp_path: Path) -> None:
    home = tmp_path
    # A key without the scope: 403; an unknown id: 404 (before any scope is judged); no /export at all.
    with httpx.Client(base_url=balena.api, timeout=30) as c:
        body = {"cert_id": "balenaos-kmod", "digest": "00" * 32}
        assert c.post("/cert/sign", json=body, headers={"X-API-Key": balena.admin}).status_code == 200
        r = c.post("/cert/sign", json={**body, "cert_id": "nope"}, headers={"X-API-Key": balena.build})
        assert r.status_code == 404 and r.json()["error"]["reason"] == "unknown-key"
        r = c.post("/gpg/sign", json={"key_id": "AB" * 20, "payload": "AAAA"}, headers={"X-API-Key": balena.build})
        assert r.status_code == 404
        assert c.post("/export", json={"key": "x"}, headers={"X-API-Key": balena.admin}).status_code in (404, 405)
        # The build key may sign but not create keys.
        r = c.post("/rsa/key", json={}, headers={"X-API-Key": balena.build})
        assert r.status_code == 403
    del home


def _raw_post(url: str, path: str, length: int) -> bytes:
    """A POST announcing ``length`` bytes that sends none: the answer must come without the body being read."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        head = (
            f"POST {parts.path}{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-API-Key: x\r\nContent-Length: {length}\r\n\r\n"
        )
        s.sendall(head.encode())
        return s.recv(4096)


def test_bodies_over_the_limit_are_413_before_they_are_read(balena: Balena) -> None:
    reply = _raw_post(balena.api, "/kmod/sign", 400 << 20)  # over the artifact limit (384 MiB)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    reply = _raw_post(balena.api, "/cert/sign", 2 << 20)  # a small route keeps the 1 MiB limit
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]


def test_the_artifact_limit_and_spool_directory_are_the_operators(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    spool = tmp_path / "spool"
    server = start_server(home, url, extra=("--spool-dir", str(spool), "--max-artifact-mib", "2"))
    try:
        api = f"{server.url}/balena"
        assert _raw_post(api, "/kmod/sign", 3 << 20).startswith(b"HTTP/1.1 413")  # over the 2 MiB given
        assert not _raw_post(api, "/kmod/sign", (1 << 20) + 10).startswith(b"HTTP/1.1 413")  # a small route's 413
        body = {"key_id": "balenaos-nope", "payload": "AAAA" * 1000}  # spooled before the (unknown) key is judged
        r = httpx.post(f"{api}/kmod/sign", json=body, headers={"X-API-Key": admin}, timeout=30)
        assert r.status_code == 404, r.text
        assert spool.is_dir() and not any(spool.iterdir())  # the operator's directory, and nothing left in it
    finally:
        server.stop()
