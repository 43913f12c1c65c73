"""``signery ca``: files, modes, chain order, refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from signery.cli import cli


def run(*args: str | Path) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_three_level_pki(tmp_path: Path) -> None:
    d = tmp_path
    code, out, _ = run("ca", "create-root", "--subject", "/CN=ACME Root CA", "--out", d / "root", "--json")
    assert code == 0 and json.loads(out)["subject"] == "CN=ACME Root CA"
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
    chain = x509.load_pem_x509_certificates((d / "acme.cert.pem").read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == ["O=ACME,CN=acme.org", "CN=ACME Signing CA"]
    for name in ("root", "sca", "acme"):
        assert stat.S_IMODE((d / f"{name}.key.pem").stat().st_mode) == 0o600


def test_refusals(tmp_path: Path) -> None:
    d = tmp_path
    assert run("ca", "create-root", "--subject", "/CN=R", "--out", d / "root")[0] == 0
    code, _, err = run("ca", "create-root", "--subject", "/CN=R", "--out", d / "root")
    assert code == 2 and "exists" in err
    code, _, err = run("ca", "issue", "--ca", d / "missing", "--subject", "/CN=x", "--out", d / "x")
    assert code == 2
    code, _, err = run("ca", "create-root", "--subject", "/XX=R", "--out", d / "bad")
    assert code == 2
