"""``signery server import-balena``: a balenaSign export made here as balenaSign makes it (a tar.gz of ``gpg/``,
``x509/`` and ``rsa/``, Fernet with a PBKDF2-SHA256 key), imported, then signed with through ``/balena`` under
balenaSign's ids and checked with gpgv, openssl and modinfo against the keys as balenaSign holds them."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from servers import init_service, run_cli, running

from support import VECTORS, require_tool

PASSPHRASE = "correct horse battery staple"


def _gpg(home: Path, *args: str, input: bytes | None = None) -> bytes:
    out = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args], input=input, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def _balena_secrets(root: Path) -> dict[str, str]:
    """balenaSign's secrets directory: a GnuPG home with an unprotected RSA key, x509/<id>.{crt,key}, rsa/<md5>/."""
    gpg_home = root / "gpg"
    gpg_home.mkdir(mode=0o700, parents=True)
    params = (
        "Key-Type: RSA\nKey-Length: 2048\nName-Real: balenaOS\nName-Email: security@balena.io\n"
        "Expire-Date: 0\n%no-protection\n%commit\n"
    )
    _gpg(gpg_home, "--gen-key", input=params.encode())
    fpr = next(
        line.split(":")[9]
        for line in _gpg(gpg_home, "--with-colons", "--list-secret-keys").decode().splitlines()
        if line.startswith("fpr:")
    )
    subprocess.run(["gpgconf", "--homedir", str(gpg_home), "--kill", "gpg-agent"], capture_output=True, check=False)
    x509 = root / "x509"
    x509.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "7305",
         "-subj", "/CN=balenaOS kmod/", "-keyout", str(x509 / "balenaos-kmod.key"),
         "-out", str(x509 / "balenaos-kmod.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True).stdout
    rid = hashlib.md5(pem).hexdigest()
    (root / "rsa" / rid).mkdir(parents=True)
    (root / "rsa" / rid / "private.pem").write_bytes(pem)
    pub = subprocess.run(["openssl", "rsa", "-pubout"], input=pem, check=True, capture_output=True).stdout
    (root / "rsa" / rid / "public.pem").write_bytes(pub)
    return {"fpr": fpr, "rsa": rid}


def _export(root: Path) -> bytes:
    """What balenaSign's POST /export answers: {data: Fernet token, salt: base64}, over a tar.gz of the directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for item in sorted(os.listdir(root)):
            tar.add(root / item, arcname=item)
    salt = os.urandom(16)
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=100_000)
    token = Fernet(base64.urlsafe_b64encode(kdf.derive(PASSPHRASE.encode()))).encrypt(buf.getvalue())
    return json.dumps({"data": token.decode(), "salt": base64.b64encode(salt).decode()}).encode()


def test_import_an_export_sign_and_verify(tmp_path: Path) -> None:
    for tool in ("gpg", "gpgv", "openssl", "modinfo", "gpgconf"):
        require_tool(tool)
    secrets = tmp_path / "balena-secrets"
    ids = _balena_secrets(secrets)
    export = tmp_path / "export.json"
    export.write_bytes(_export(secrets))
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    wrong = run_cli("server", "import-balena", "--database-url", url, "--export", str(export), home=home,
                    env={"BALENA_EXPORT_PASSPHRASE": "wrong"})  # fmt: skip
    assert wrong.returncode != 0 and "passphrase" in (wrong.stdout + wrong.stderr)
    env = {"BALENA_EXPORT_PASSPHRASE": PASSPHRASE}
    out = run_cli("server", "import-balena", "--database-url", url, "--export", str(export), home=home, env=env)
    assert out.returncode == 0, out.stderr
    assert "3 key(s) imported" in out.stdout, out.stdout
    again = run_cli("server", "import-balena", "--database-url", url, "--export", str(export), home=home, env=env)
    assert again.returncode == 0 and "0 key(s) imported" in again.stdout, again.stdout
    # Nothing unencrypted was left anywhere the service writes.
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data and b"private-key" not in data, path
    (tmp_path / "check").mkdir()
    work = tmp_path / "check"
    h = {"X-API-Key": admin}
    with running(home, url) as server, httpx.Client(base_url=f"{server.url}/balena", timeout=60) as c:
        # GPG: the original fingerprint, any case; the signature checks against the key as gpg exported it.
        assert c.get("/gpg/keys").json()["keys"] == [ids["fpr"]]
        payload = os.urandom(4096)
        r = c.post("/gpg/sign", json={"key_id": ids["fpr"].lower(), "payload": base64.b64encode(payload).decode()},
                   headers=h)  # fmt: skip
        assert r.status_code == 200, r.text
        (work / "f").write_bytes(payload)
        (work / "f.sig").write_bytes(base64.b64decode(r.json()["signature"]))
        (work / "grub.gpg").write_bytes(_gpg(secrets / "gpg", "--export", ids["fpr"]))
        subprocess.run(["gpgconf", "--homedir", str(secrets / "gpg"), "--kill", "gpg-agent"], check=False)
        gpgv = subprocess.run(["gpgv", "--keyring", str(work / "grub.gpg"), str(work / "f.sig"), str(work / "f")],
                              capture_output=True)  # fmt: skip
        assert gpgv.returncode == 0, gpgv.stderr
        served = c.get(f"/gpg/key/{ids['fpr'][-16:]}").json()["key"]
        assert subprocess.run(["gpg", "--dearmor"], input=served.encode(), capture_output=True).stdout
        # x509: the very certificate balenaSign made, and module signatures that openssl checks against it.
        assert c.get("/kmod/cert/balenaos-kmod").json()["cert"].strip() == (
            (secrets / "x509" / "balenaos-kmod.crt").read_text().strip()
        )
        ko = (VECTORS / "balena" / "signery_test.ko").read_bytes()
        r = c.post("/kmod/sign", json={"key_id": "balenaos-kmod", "payload": base64.b64encode(ko).decode()}, headers=h)
        assert r.status_code == 200, r.text
        (work / "m.ko").write_bytes(base64.b64decode(r.json()["signed"]))
        info = subprocess.run(["modinfo", str(work / "m.ko")], capture_output=True, text=True).stdout
        assert "balenaOS kmod" in info and "sha512" in info
        # RSA: the MD5 id; the EEPROM digest verifies with balenaSign's public.pem.
        assert c.get("/rsa/keys").json()["keys"] == [ids["rsa"]]
        r = c.post("/rsa/sign", json={"key_id": ids["rsa"], "payload": base64.b64encode(payload).decode()}, headers=h)
        lines = base64.b64decode(r.json()["signature"]).decode().splitlines()
        (work / "sig.bin").write_bytes(bytes.fromhex(lines[2].split(": ")[1]))
        ok = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", str(secrets / "rsa" / ids["rsa"] / "public.pem"),
             "-signature", str(work / "sig.bin"), str(work / "f")], capture_output=True, text=True,
        )  # fmt: skip
        assert "Verified OK" in ok.stdout


def test_import_a_secrets_directory_in_process(tmp_path: Path) -> None:
    require_tool("gpg")
    from signery.service.balena_import import decrypt_export, import_balena
    from signery.service.settings import MasterKey
    from signery.service.storage import Database

    secrets = tmp_path / "secrets"
    ids = _balena_secrets(secrets)
    with pytest.raises(Exception, match="passphrase"):
        decrypt_export(_export(secrets), "nope")
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    db.migrate()
    report = import_balena(db, MasterKey(os.urandom(32)), directory=secrets)
    db.dispose()
    assert sorted(r.split()[0] for r in report.imported) == ["gpg", "rsa", "x509"], report
    assert any(ids["fpr"].lower() in r for r in report.imported)
