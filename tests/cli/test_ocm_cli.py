"""``signery ocm``: the issue's commands end to end, in-process, with exit codes."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from signery.cli import cli


def run(*args: str | Path) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture()
def compat(vectors: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "compat"
    shutil.copytree(vectors / "ocm/compat-archive/component-archive", dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_normalise_and_digest_the_conformance_vector(vectors: Path) -> None:
    src = vectors / "ocm/conformance-v3-01"
    code, out, _ = run("ocm", "normalise", src / "input.yaml", "--algorithm", "jsonNormalisation/v3")
    assert code == 0 and out.encode() == (src / "expected.json").read_bytes().rstrip(b"\n")
    code, out, _ = run("ocm", "digest", src / "input.yaml")
    assert out.strip() == "c97c44a4dca9fc85d4e634a617b662f72935cc202d52a46aa9367c937458b35b"
    code, out, _ = run("ocm", "digest", src / "input.yaml", "--hash", "sha512", "--json")
    assert json.loads(out)["hashAlgorithm"] == "SHA-512"


def test_verify_compat_archive(vectors: Path, compat: Path) -> None:
    code, out, _ = run(
        "ocm", "verify", compat, "--signature", "test", "--public-key", vectors / "ocm/compat-archive/rsa.pub"
    )
    assert code == 0, out
    (next((compat / "blobs").iterdir())).write_bytes(b"evil")
    code, out, _ = run(
        "ocm", "verify", compat, "--signature", "test", "--public-key", vectors / "ocm/compat-archive/rsa.pub", "--json"
    )
    doc = json.loads(out)
    assert code == 1 and doc["reason"] == "tampered" and doc["signatures"][0]["subject"] == "resource text"


def test_keygen_sign_verify(tmp_path: Path, compat: Path) -> None:
    code, out, _ = run("ocm", "keygen", tmp_path / "acme")
    assert code == 0 and "created rsa key pair" in out
    priv, pub = tmp_path / "acme.priv", tmp_path / "acme.pub"
    assert priv.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    for alg in ("RSASSA-PKCS1-V1_5", "RSASSA-PSS"):
        code, out, err = run("ocm", "sign", compat, "--signature", alg, "--key", priv, "--algorithm", alg)
        assert code == 0, err
        code, out, err = run("ocm", "verify", compat, "--signature", alg, "--public-key", pub)
        assert code == 0, err
    code, _, err = run("ocm", "verify", compat, "--signature", "RSASSA-PSS", "--public-key", pub.parent / "nope.pub")
    assert code == 2
    run("ocm", "keygen", tmp_path / "other")
    code, _, err = run("ocm", "verify", compat, "--signature", "RSASSA-PSS", "--public-key", tmp_path / "other.pub")
    assert code == 1 and "bad-signature" in err


def test_usage_errors(tmp_path: Path, compat: Path, vectors: Path) -> None:
    code, _, err = run("ocm", "verify", compat, "--signature", "test")
    assert code == 2 and "--public-key" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta: {schemaVersion: v9}\ncomponent: {name: a, version: b}\n")
    code, _, err = run("ocm", "digest", bad)
    assert code == 2 and "meta.schemaVersion" in err
    code, _, err = run(
        "ocm", "verify", tmp_path, "--signature", "x", "--public-key", vectors / "ocm/compat-archive/rsa.pub"
    )
    assert code == 2


def test_certificate_flow_with_ca_commands(tmp_path: Path, compat: Path) -> None:
    d = tmp_path
    assert run("ca", "create-root", "--subject", "/CN=ACME Root CA", "--out", d / "root")[0] == 0
    assert (
        run("ca", "create-intermediate", "--ca", d / "root", "--subject", "/CN=ACME Signing CA", "--out", d / "sca")[0]
        == 0
    )
    assert (
        run(
            "ca", "issue", "--ca", d / "sca", "--subject", "/CN=acme.org/O=ACME", "--code-signing", "--out", d / "acme"
        )[0]
        == 0
    )
    assert (
        run("ca", "issue", "--ca", d / "sca", "--subject", "/CN=web", "--no-code-signing", "--out", d / "web")[0] == 0
    )
    code, out, err = run(
        "ocm",
        "sign",
        compat,
        "--signature",
        "acme",
        "--key",
        d / "acme.key.pem",
        "--cert",
        d / "acme.cert.pem",
        "--algorithm",
        "RSASSA-PSS",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["signature"]["signature"]["mediaType"] == "application/x-pem-file"
    code, out, err = run("ocm", "verify", compat, "--signature", "acme", "--ca-cert", d / "root.cert.pem")
    assert code == 0 and "acme.org" in out, err
    run("ocm", "sign", compat, "--signature", "web", "--key", d / "web.key.pem", "--cert", d / "web.cert.pem")
    code, out, err = run("ocm", "verify", compat, "--signature", "web", "--ca-cert", d / "root.cert.pem", "--json")
    assert code == 1 and json.loads(out)["reason"] == "policy-violation"
    assert run("ca", "create-root", "--subject", "/CN=Other", "--out", d / "other")[0] == 0
    code, out, _ = run("ocm", "verify", compat, "--signature", "acme", "--ca-cert", d / "other.cert.pem", "--json")
    assert code == 1 and json.loads(out)["reason"] == "unknown-key"
    # the legacy `test` signature is still intact after two re-signings of other names
    assert hashlib.sha256((next((compat / "blobs").iterdir())).read_bytes()).hexdigest().startswith("c893900c")
