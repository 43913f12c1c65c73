"""`signery sign` picks the format from the key and the package, says so, and never overwrites without --force."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from signery.cli import cli
from signery.formats import names
from signery.policy import ENV_VARS


def run(*args: object) -> tuple[int, str, str]:
    env: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    env["ELASTIC_PACKAGE_SIGNER_PRIVATE_KEYFILE"] = None
    r = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for args in (["rsa", "--format", "dify"], ["ed", "--format", "native"]):
        assert run("keygen", *args, "--out-dir", d)[0] == 0
    code, _, err = run("keygen", "pgp", "--format", "openpgp", "--uid", "P <p@example.org>", "--out-dir", d)
    assert code == 0, err
    return d


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.yaml", "name: demo\nversion: 0.0.1\nauthor: acme\n")
        zf.writestr("main.py", "print('hi')\n")
    return path


def _pgp_key(keys: Path) -> Path:
    return next(p for p in keys.iterdir() if p.name.startswith("pgp.") and "private" in p.name)


def test_an_openpgp_key_signs_openpgp(keys: Path, tmp_path: Path, home: Path) -> None:
    pkg = _zip(tmp_path / "acme-1.0.0.zip")
    code, _, err = run("sign", pkg, "--key", _pgp_key(keys))
    assert code == 0, err
    assert "format: openpgp (inferred" in err
    assert (tmp_path / "acme-1.0.0.zip.sig").is_file()


def test_a_difypkg_with_an_rsa_key_signs_dify_and_with_ed25519_native(
    keys: Path, vectors: Path, tmp_path: Path, home: Path
) -> None:
    pkg = Path(shutil.copy(vectors / "dify" / "dummy_plugin.difypkg", tmp_path / "dummy_plugin.difypkg"))
    code, out, err = run("sign", pkg, "--key", keys / "rsa.private.pem", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["ok"], doc["format"], doc["inferred"]) == (True, "dify", True)
    signed = tmp_path / "dummy_plugin.signed.difypkg"
    assert doc["written"] == str(signed)
    before = signed.read_bytes()
    # an Ed25519 key cannot sign Dify: the native format, beside the Dify-signed package, which stays as it was
    code, out, err = run("sign", signed, "--key", keys / "ed.private.pem", "--json")
    assert code == 0, err
    assert json.loads(out)["format"] == "native"
    assert signed.read_bytes() == before
    assert (
        run("verify", signed, "--key", keys / "rsa.public.pem", "--key", keys / "ed.public.pem", "--threshold", "2")[0]
        == 0
    )


def test_an_existing_output_is_never_replaced_without_force(keys: Path, tmp_path: Path, home: Path) -> None:
    pkg = _zip(tmp_path / "plugin.zip")
    assert run("sign", pkg, "--key", keys / "ed.private.pem")[0] == 0
    signed = tmp_path / "plugin.signed.zip"
    first = signed.read_bytes()
    code, out, err = run("sign", pkg, "--key", keys / "ed.private.pem", "--json")
    assert code == 2
    doc = json.loads(out)
    assert (doc["ok"] is False and doc["reason"] == "malformed") or doc["reason"] is not None
    assert str(signed) in doc["message"] and "--force" in (doc["hint"] or "")
    assert signed.read_bytes() == first
    code, _, err = run("sign", pkg, "--key", keys / "ed.private.pem", "--force")
    assert code == 0, err
    # a countersignature in place, or into a signature file, keeps what is there: no --force needed
    assert run("sign", signed, "--key", keys / "rsa.private.pem", "--format", "native", "--in-place")[0] == 0
    code, _, _ = run(
        "verify", signed, "--key", keys / "rsa.public.pem", "--key", keys / "ed.public.pem", "--threshold", 2
    )
    assert code == 0
    loose = tmp_path / "notes.txt"
    loose.write_text("x")
    for key in ("ed", "rsa"):
        assert run("sign", loose, "--key", keys / f"{key}.private.pem", "--format", "native")[0] == 0
    assert (
        run("verify", loose, "--key", keys / "rsa.public.pem", "--key", keys / "ed.public.pem", "--threshold", 2)[0]
        == 0
    )


def test_an_option_another_format_takes_is_refused_by_name(keys: Path, tmp_path: Path, home: Path) -> None:
    pkg = _zip(tmp_path / "plugin.zip")
    code, _, err = run("sign", pkg, "--key", keys / "ed.private.pem", "--armor")
    assert code == 2 and "--armor" in err and "native format" in err
    code, _, err = run("sign", pkg, "--key", keys / "rsa.private.pem", "--format", "dify", "--claim", "name=x")
    assert code == 2 and "--claim" in err and "dify format" in err
    assert not (tmp_path / "plugin.signed.zip").exists()


def test_a_pem_key_for_openpgp_is_a_clear_usage_error(keys: Path, tmp_path: Path, home: Path) -> None:
    pkg = _zip(tmp_path / "plugin.zip")
    code, _, err = run("sign", pkg, "--key", keys / "ed.private.pem", "--format", "openpgp")
    assert code == 2 and "is not an OpenPGP key" in err and "Traceback" not in err
    assert not (tmp_path / "plugin.zip.sig").exists()


def test_the_format_choices_are_the_registry() -> None:
    r = CliRunner().invoke(cli, ["sign", "--help"])
    for name in names():
        assert name in r.output
