"""``signery keygen/sign/verify/trust`` with ``--format openpgp``, end to end, with gpg as the peer."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from signery.cli import cli
from support import require_tool

PASS = "s3cret passphrase"


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def gpg(home: Path, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", PASS]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, timeout=120)


@pytest.fixture()
def pkg(tmp_path: Path) -> Path:
    p = tmp_path / "plugin-0.1.0.tar.gz"
    p.write_bytes(b"\x1f\x8b" + b"plugin bytes" * 1000)
    return p


def test_keygen_sign_verify_with_gpg(tmp_path: Path, pkg: Path, home: Path) -> None:
    require_tool("gpg")
    env = {"ALICE_PASS": PASS}
    code, out, err = run(
        "keygen", "alice", "--format", "openpgp", "--uid", "Alice <alice@example.org>", "--algorithm", "ed25519",
        "--passphrase-env", "ALICE_PASS", "--out-dir", tmp_path, "--json", env=env,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    priv, pub = Path(doc["private_key"]), Path(doc["public_key"])
    assert priv.name == "alice.private.asc" and stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")

    code, out, err = run("sign", pkg, "--format", "openpgp", "--key", priv, "--passphrase-env", "ALICE_PASS", env=env)
    assert code == 0, err
    sig = pkg.with_name(pkg.name + ".sig")
    assert sig.read_bytes()[0] & 0x80  # binary by default

    code, out, err = run("verify", pkg, "--signature", sig, "--key", pub)
    assert code == 0, out + err
    code, out, _ = run("verify", pkg, "--key", pub, "--json")  # finds plugin-0.1.0.tar.gz.sig itself
    assert code == 0 and json.loads(out)["verified"]

    ghome = tmp_path / "gnupg"
    ghome.mkdir(mode=0o700)
    assert gpg(ghome, "--import", pub).returncode == 0
    assert gpg(ghome, "--verify", sig, pkg).returncode == 0

    # Elastic style: armored .sig, key from ELASTIC_PACKAGE_SIGNER_* when no --key is given
    zipped = tmp_path / "pkg-1.0.0.zip"
    zipped.write_bytes(b"PK\x05\x06" + bytes(18))
    elastic = {"ELASTIC_PACKAGE_SIGNER_PRIVATE_KEYFILE": str(priv), "ELASTIC_PACKAGE_SIGNER_PASSPHRASE": PASS}
    code, out, err = run("sign", zipped, "--format", "openpgp", "--armor", env=elastic)
    assert code == 0, err
    zsig = zipped.with_name(zipped.name + ".sig")
    assert zsig.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert gpg(ghome, "--verify", zsig, zipped).returncode == 0

    # trust store: add, verify without --key, tamper, remove
    code, out, err = run("trust", "add", pub)
    assert code == 0, err
    code, out, _ = run("trust", "list", "--json")
    assert code == 0 and doc["key_id"] in out
    assert run("verify", pkg)[0] == 0
    pkg.write_bytes(pkg.read_bytes() + b"x")
    code, out, err = run("verify", pkg, "--json")
    assert code == 1 and json.loads(out)["reason"] == "bad-signature"
    assert run("trust", "remove", doc["key_id"])[0] == 0
    code, out, _ = run("verify", zipped, "--json")
    assert code == 1 and json.loads(out)["reason"] == "unknown-key"


def test_gpg_key_and_signatures_through_cli(tmp_path: Path, pkg: Path, home: Path) -> None:
    require_tool("gpg")
    ghome = tmp_path / "gnupg"
    ghome.mkdir(mode=0o700)
    assert gpg(ghome, "--quick-gen-key", "Gus <gus@example.org>", "ed25519", "sign", "never").returncode == 0
    (tmp_path / "gus.asc").write_bytes(gpg(ghome, "--armor", "--export").stdout)
    (tmp_path / "gus.sec").write_bytes(gpg(ghome, "--export-secret-keys").stdout)
    # gpg signs, signery verifies (binary and armored)
    assert gpg(ghome, "--detach-sign", "--output", pkg.with_name(pkg.name + ".sig"), pkg).returncode == 0
    assert run("verify", pkg, "--key", tmp_path / "gus.asc")[0] == 0
    # SHA-1 is refused with the hash named
    sha1 = tmp_path / "sha1.sig"
    assert gpg(ghome, "--digest-algo", "SHA1", "--detach-sign", "--output", sha1, pkg).returncode == 0
    code, out, _ = run("verify", pkg, "--signature", sha1, "--key", tmp_path / "gus.asc", "--json")
    assert code == 1 and "SHA1" in json.loads(out)["message"]
    # gpg's secret key signs through signery; adding it to the trust store keeps only the public part
    env = {"GUS_PASS": PASS}
    code, _, err = run(
        "sign", pkg, "--format", "openpgp", "--key", tmp_path / "gus.sec", "--passphrase-env", "GUS_PASS",
        "--output", tmp_path / "ours.sig", env=env,
    )  # fmt: skip
    assert code == 0, err
    assert gpg(ghome, "--verify", tmp_path / "ours.sig", pkg).returncode == 0
    code, out, err = run("trust", "add", tmp_path / "gus.sec")
    assert code == 0, err
    assert "PRIVATE" not in (home / "trust.json").read_text()
    # a wrong passphrase is a usage error, not a crash
    code, _, err = run(
        "sign", pkg, "--format", "openpgp", "--key", tmp_path / "gus.sec", "--passphrase-env", "GUS_PASS",
        env={"GUS_PASS": "wrong"},
    )  # fmt: skip
    assert code == 2 and "passphrase" in err


def test_not_openpgp_refused_by_trust(tmp_path: Path, home: Path) -> None:
    junk = tmp_path / "junk.asc"
    junk.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64!\n-----END PGP PUBLIC KEY BLOCK-----\n")
    code, _, err = run("trust", "add", junk)
    assert code == 2 and "junk.asc" in err


def test_sign_reports_the_fingerprint_and_refuses_a_pem_key_clearly(tmp_path: Path, pkg: Path, home: Path) -> None:
    code, out, err = run(
        "keygen", "olga", "--format", "openpgp", "--uid", "Olga <olga@example.org>", "--algorithm", "ed25519",
        "--out-dir", tmp_path, "--json",
    )  # fmt: skip
    assert code == 0, err
    fingerprint = json.loads(out)["key_id"]
    code, out, err = run("sign", pkg, "--format", "openpgp", "--key", tmp_path / "olga.private.asc", "--json")
    assert code == 0, err
    assert json.loads(out)["key_id"] == fingerprint  # the OpenPGP identity, not signery's SPKI key id
    # a PEM key (native's) is not an OpenPGP key: a usage error that says so, never a traceback
    assert run("keygen", "pem", "--out-dir", tmp_path)[0] == 0
    code, _, err = run("sign", pkg, "--format", "openpgp", "--key", tmp_path / "pem.private.pem")
    assert code == 2 and "is not an OpenPGP key" in err and "--certificate" in err
