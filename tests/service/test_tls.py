"""HTTPS: ``signery server --tls-cert/--tls-key`` on loopback with a certificate from a private CA made here by
``openssl``, clients trusting that CA with ``--ca-file`` / ``SIGNERY_CA_FILE``, and refusing anything else."""

from __future__ import annotations

import os
import ssl
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from servers import init_service, run_cli, running

from signery.cli import cli
from signery.errors import ConfigError, EnvironmentFailure
from signery.keys import verify_signature
from signery.remote import RemoteSigner, remote_public_key
from signery.service.settings import MasterKey, tls_files
from support import require_tool


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path
    other_key: Path  # a key that does not belong to ``cert``


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=signery test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_tool("openssl")
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    (d / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "leaf.ext", "-out", "server.pem", cwd=d,
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "stray.key", cwd=d)
    for key in ("server.key", "stray.key"):
        os.chmod(d / key, 0o600)
    return Pki(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "server.key", d / "stray.key")


@dataclass
class HttpsService:
    url: str
    admin: str
    home: Path


@pytest.fixture(scope="module")
def https_service(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsService]:
    home = tmp_path_factory.mktemp("https-home")
    url = f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    with running(home, url, workers=2, tls=(pki.cert, pki.key, pki.ca)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        out = run_cli("remote", "keys", "--server", server.url, "--ca-file", str(pki.ca), home=home,
                      env={"SIGNERY_API_KEY": admin})  # fmt: skip
        assert out.returncode == 0, out.stderr
        r = httpx.post(
            f"{server.url}/v1/keys",
            json={"name": "rel", "type": "ecdsa-p256"},
            headers={"X-API-Key": admin},
            verify=ssl.create_default_context(cafile=str(pki.ca)),
        )
        assert r.status_code == 201, r.text
        yield HttpsService(server.url, admin, home)


def test_cli_and_library_sign_over_https_trusting_a_private_ca(pki: Pki, https_service: HttpsService) -> None:
    svc = https_service
    env = {"SIGNERY_API_KEY": svc.admin}
    out = run_cli("remote", "keys", "--server", svc.url, "--ca-file", str(pki.ca), home=svc.home, env=env)
    assert out.returncode == 0 and "rel" in out.stdout, out.stderr
    out = run_cli(
        "remote", "public-key", "rel", "--server", svc.url, home=svc.home, env={"SIGNERY_CA_FILE": str(pki.ca)}
    )
    assert out.returncode == 0 and "BEGIN PUBLIC KEY" in out.stdout, out.stderr
    signer = RemoteSigner(svc.url, svc.admin, "rel", ca_file=pki.ca)
    try:
        signature = signer.sign(b"statement")
        verify_signature(signer.public_key(), signature, b"statement")
    finally:
        signer.close()


@pytest.mark.parametrize("trust", ["system", "other-ca"])
def test_client_refuses_a_certificate_it_does_not_trust(pki: Pki, https_service: HttpsService, trust: str) -> None:
    svc = https_service
    ca_args = ["--ca-file", str(pki.other_ca)] if trust == "other-ca" else []
    env = {"SIGNERY_API_KEY": svc.admin, "SIGNERY_CA_FILE": "", "SSL_CERT_FILE": "", "SSL_CERT_DIR": ""}
    out = run_cli("remote", "keys", "--server", svc.url, *ca_args, home=svc.home, env=env)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "certificate this client does not trust" in out.stderr and "--ca-file" in out.stderr
    with pytest.raises(EnvironmentFailure, match="does not trust"):
        remote_public_key(svc.url, "rel", ca_file=pki.other_ca)


def test_a_ca_file_that_is_not_one_is_a_config_error(tmp_path: Path, https_service: HttpsService) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    out = run_cli("remote", "public-key", "rel", "--server", https_service.url, "--ca-file", str(bogus),
                  home=tmp_path)  # fmt: skip
    assert out.returncode == 3 and "holds no usable PEM certificates" in out.stderr
    with pytest.raises(ConfigError, match="does not exist"):
        remote_public_key(https_service.url, "rel", ca_file=tmp_path / "missing.pem")


def test_server_refuses_unusable_tls_options(pki: Pki, tmp_path: Path, home: Path) -> None:
    (home / "master.key").write_text(MasterKey(b"k" * 32).to_text())
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    runner = CliRunner()

    def serve(*tls: str) -> tuple[int, str]:
        out = runner.invoke(cli, ["server", "--database-url", url, "--port", "1", *tls])
        return out.exit_code, out.output

    code, text = serve("--tls-cert", str(pki.cert))
    assert code == 3 and "--tls-cert and --tls-key go together" in text and "--tls-key is missing" in text
    code, text = serve("--tls-key", str(pki.key))
    assert code == 3 and "--tls-cert is missing" in text
    open_key = tmp_path / "open.key"
    open_key.write_bytes(pki.key.read_bytes())
    open_key.chmod(0o640)
    code, text = serve("--tls-cert", str(pki.cert), "--tls-key", str(open_key))
    assert code == 3 and "config-error" in text and "accessible by group or others (mode 0640)" in text
    assert f"chmod 600 {open_key}" in text
    code, text = serve("--tls-cert", str(pki.cert), "--tls-key", str(pki.other_key))
    assert code == 3 and "do not load as a pair" in text
    code, text = serve("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(pki.key))
    assert code == 3 and "does not exist" in text


def test_tls_files_accepts_a_private_key_and_its_certificate(pki: Pki) -> None:
    assert tls_files(None, None) is None
    files = tls_files(pki.cert, pki.key)
    assert files is not None and files.cert == pki.cert
    with pytest.raises(ConfigError):
        tls_files(pki.ca, pki.key)  # the CA certificate does not go with the server key


def test_plain_http_client_cannot_talk_to_the_https_port(https_service: HttpsService) -> None:
    plain = "http://" + https_service.url.removeprefix("https://")
    out = run_cli("remote", "public-key", "rel", "--server", plain, home=https_service.home)
    assert out.returncode == 3 and "unreachable" in out.stderr


def test_sign_with_a_remote_key_over_https(pki: Pki, https_service: HttpsService, tmp_path: Path) -> None:
    svc = https_service
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as zf:
        zf.writestr("main.py", "print('hi')\n")
    env = {"SIGNERY_API_KEY": svc.admin}
    sign = ["sign", str(tmp_path / "p.zip"), "--key", "remote:rel", "--server", svc.url]
    out = run_cli(*sign, "--ca-file", str(pki.ca), home=svc.home, env=env)
    assert out.returncode == 0, out.stderr
    trust_ca = {"SIGNERY_CA_FILE": str(pki.ca)}
    pub = run_cli("remote", "public-key", "rel", "--server", svc.url, home=svc.home, env=trust_ca)
    (tmp_path / "rel.pub").write_text(pub.stdout)
    out = run_cli("verify", str(tmp_path / "p.signed.zip"), "--key", str(tmp_path / "rel.pub"), home=svc.home)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run_cli(*sign, "--in-place", home=svc.home, env={**env, "SIGNERY_CA_FILE": str(pki.other_ca)})
    assert out.returncode == 3 and "does not trust" in out.stderr, out.stdout + out.stderr
