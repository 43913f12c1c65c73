"""OCM from the command line, end to end, in-process, with exit codes: `signery ocm normalise|digest|keygen|
transfer`, and signing and verifying component archives with `signery sign` / `signery verify`, by key, by trust
store and by X.509 root."""

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


@pytest.fixture()
def rsa_pub(vectors: Path) -> Path:
    return vectors / "ocm/compat-archive/rsa.pub"


def statuses(out: str) -> list[tuple[str, str]]:
    doc = json.loads(out)
    return [(s["claims"].get("signature"), s["status"]) for s in doc["signatures"]]


def test_normalise_and_digest_the_conformance_vector(vectors: Path) -> None:
    src = vectors / "ocm/conformance-v3-01"
    code, out, _ = run("ocm", "normalise", src / "input.yaml", "--algorithm", "jsonNormalisation/v3")
    assert code == 0 and out.encode() == (src / "expected.json").read_bytes().rstrip(b"\n")
    code, out, _ = run("ocm", "digest", src / "input.yaml")
    assert out.strip() == "c97c44a4dca9fc85d4e634a617b662f72935cc202d52a46aa9367c937458b35b"
    code, out, _ = run("ocm", "digest", src / "input.yaml", "--hash", "sha512", "--json")
    assert json.loads(out)["hashAlgorithm"] == "SHA-512"


def test_verify_compat_archive_with_its_key(compat: Path, rsa_pub: Path) -> None:
    code, out, err = run("verify", compat, "--key", rsa_pub)
    assert code == 0, err
    assert "ocm" in out and "signature=test" in out
    code, out, _ = run("verify", compat, "--key", rsa_pub, "--format", "ocm", "--json")
    assert code == 0 and statuses(out) == [("test", "valid")]
    (next((compat / "blobs").iterdir())).write_bytes(b"evil")
    code, out, _ = run("verify", compat, "--key", rsa_pub, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["reason"] == "tampered" and doc["signatures"][0]["subject"] == "resource text"


def test_trust_store_add_then_verify(compat: Path, rsa_pub: Path, home: Path, tmp_path: Path) -> None:
    code, _, err = run("verify", compat)
    assert code == 1 and "unknown-key" in err  # an empty trust store trusts nothing
    assert run("trust", "add", rsa_pub, "--format", "ocm")[0] == 0
    code, out, err = run("verify", compat)
    assert code == 0, err
    assert run("trust", "remove", "rsa")[0] == 0
    assert run("trust", "add", rsa_pub, "--format", "native")[0] == 0
    code, out, _ = run("verify", compat, "--json")
    assert code == 1 and json.loads(out)["reason"] == "policy-violation"


def test_keygen_sign_verify(tmp_path: Path, compat: Path) -> None:
    code, out, _ = run("ocm", "keygen", tmp_path / "acme")
    assert code == 0 and "created rsa key pair" in out
    priv, pub = tmp_path / "acme.priv", tmp_path / "acme.pub"
    assert priv.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    for alg in ("RSASSA-PKCS1-V1_5", "RSASSA-PSS"):
        code, out, err = run(
            "sign", compat, "--format", "ocm", "--key", priv, "--signature-name", alg, "--algorithm", alg, "--json"
        )
        assert code == 0, out + err
        assert json.loads(out)["written"] == str(compat)
    code, out, err = run("verify", compat, "--key", pub, "--json")
    assert code == 0, err
    assert statuses(out) == [("test", "unknown-key"), ("RSASSA-PKCS1-V1_5", "valid"), ("RSASSA-PSS", "valid")]
    code, _, err = run("verify", compat, "--key", pub.parent / "nope.pub")
    assert code == 2
    run("ocm", "keygen", tmp_path / "other")
    code, _, err = run("verify", compat, "--key", tmp_path / "other.pub")
    assert code == 1 and "unknown-key" in err


def test_sign_infers_ocm_for_a_component_archive(tmp_path: Path, compat: Path) -> None:
    run("ocm", "keygen", tmp_path / "acme")
    code, out, err = run("sign", compat, "--key", tmp_path / "acme.priv", "--signature-name", "acme")
    assert code == 0, err
    assert "(ocm)" in out and "format: ocm" in err
    code, out, _ = run("verify", compat, "--key", tmp_path / "acme.pub", "--json")
    assert code == 0 and ("acme", "valid") in statuses(out)
    code, _, err = run("sign", compat, "--key", tmp_path / "acme.priv", "--category", "partner")
    assert code == 2  # a Dify option: not the OCM format's


def test_wrong_signature_options(tmp_path: Path, compat: Path, rsa_pub: Path) -> None:
    code, _, err = run("verify", compat, "--key", rsa_pub, "--signature", tmp_path / "missing.sig")
    assert code == 2  # --signature is a detached file everywhere; OCM's are named inside the descriptor
    sig = tmp_path / "acme.sig"
    sig.write_text("x")
    code, _, err = run("verify", compat, "--key", rsa_pub, "--format", "ocm", "--signature", sig)
    assert code == 2 and "named signature" in err


def test_the_old_sign_and_verify_commands_say_where_they_went(compat: Path, rsa_pub: Path) -> None:
    code, _, err = run("ocm", "sign", compat, "--signature", "acme", "--key", "k.priv")
    assert code == 2 and "signery sign" in err and "--format ocm" in err
    code, out, _ = run("ocm", "verify", compat, "--signature", "test", "--public-key", rsa_pub, "--json")
    doc = json.loads(out)
    assert code == 2 and doc["ok"] is False and doc["reason"] == "malformed" and "signery verify" in doc["message"]


def test_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta: {schemaVersion: v9}\ncomponent: {name: a, version: b}\n")
    code, _, err = run("ocm", "digest", bad)
    assert code == 2 and "meta.schemaVersion" in err
    code, _, err = run("ocm", "transfer", tmp_path, tmp_path / "ctf")
    assert code == 2 and "neither a component archive" in err


def test_certificate_flow_with_ca_commands(tmp_path: Path, compat: Path, home: Path) -> None:
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
        "sign",
        compat,
        "--format",
        "ocm",
        "--key",
        d / "acme.key.pem",
        "--chain",
        d / "acme.cert.pem",
        "--signature-name",
        "acme",
        "--algorithm",
        "RSASSA-PSS",
        "--json",
    )
    assert code == 0, out + err
    code, out, err = run("verify", compat, "--key", d / "root.cert.pem", "--json")
    assert code == 0, out + err  # `test` is by a key the root does not vouch for; `acme` chains up to the root
    assert statuses(out) == [("test", "unknown-key"), ("acme", "valid")]
    assert json.loads(out)["signatures"][1]["claims"]["certificate"] == "O=ACME,CN=acme.org"
    # the same root, from the trust store
    assert run("trust", "add", d / "root.cert.pem", "--format", "ocm")[0] == 0
    code, out, err = run("verify", compat)
    assert code == 0, err
    code, out, err = run(
        "sign",
        compat,
        "--format",
        "ocm",
        "--key",
        d / "web.key.pem",
        "--chain",
        d / "web.cert.pem",
        "--signature-name",
        "web",
    )
    assert code == 0, err
    code, out, err = run("verify", compat, "--key", d / "root.cert.pem", "--json")
    assert code == 0 and ("web", "policy-violation") in statuses(out)  # no CodeSigning; acme still verifies
    assert run("ca", "create-root", "--subject", "/CN=Other", "--out", d / "other")[0] == 0
    code, out, _ = run("verify", compat, "--key", d / "other.cert.pem", "--json")
    assert code == 1 and json.loads(out)["reason"] == "unknown-key"
    # the legacy `test` signature is still intact after two re-signings of other names
    assert hashlib.sha256((next((compat / "blobs").iterdir())).read_bytes()).hexdigest().startswith("c893900c")
    assert run("verify", compat, "--key", Path(__file__).parents[1] / "vectors/ocm/compat-archive/rsa.pub")[0] == 0


def test_transfer_round_trip(tmp_path: Path, compat: Path, rsa_pub: Path) -> None:
    ctf = tmp_path / "ctf"
    code, out, err = run("ocm", "transfer", compat, ctf)
    assert code == 0 and "copied github.com/mandelsoft/test:1.0.0" in out, err
    code, out, err = run("verify", ctf, "--key", rsa_pub, "--json")
    assert code == 0 and statuses(out) == [("test", "valid")], out + err
    code, out, _ = run("ocm", "transfer", compat, ctf, "--json")
    assert code == 0 and json.loads(out)["present"] == ["github.com/mandelsoft/test:1.0.0"]
    run("ocm", "keygen", tmp_path / "acme")
    assert run("sign", compat, "--key", tmp_path / "acme.priv", "--signature-name", "acme")[0] == 0
    code, out, _ = run("ocm", "transfer", compat, ctf, "--json")  # now a different descriptor of that version
    assert code == 2 and json.loads(out)["ok"] is False
    code, out, err = run("ocm", "transfer", ctf, tmp_path / "ctf2", "--component", "github.com/mandelsoft/test")
    assert code == 0, err
    assert run("verify", tmp_path / "ctf2", "--key", rsa_pub)[0] == 0
    code, out, err = run("inspect", tmp_path / "ctf2", "--json")
    assert code == 0 and json.loads(out)["formats"] == ["ocm"], err
