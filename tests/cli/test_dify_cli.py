"""The Dify workflow through the ``signery`` command line: keygen, sign, verify, trust constraints, install."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signery.cli import cli
from signery.policy import ENV_VARS

AGENT = "langgenius-agent_0.0.14.difypkg"


def run(*args: object, env: dict[str, str | None] | None = None) -> Result:
    clean: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    clean.update(env or {})
    return CliRunner().invoke(cli, [str(a) for a in args], env=clean, catch_exceptions=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    r = run("keygen", "acme", "--format", "dify", "--out-dir", d)
    assert r.exit_code == 0, r.output
    return d


def test_keygen_writes_dify_pem_forms(keys: Path) -> None:
    private, public = keys / "acme.private.pem", keys / "acme.public.pem"
    assert private.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_sign_and_verify(keys: Path, vectors: Path, tmp_path: Path, home: Path) -> None:
    pkg = Path(shutil.copy(vectors / "dify" / "dummy_plugin.difypkg", tmp_path / "dummy_plugin.difypkg"))
    r = run("sign", pkg, "--format", "dify", "--key", keys / "acme.private.pem", "--category", "partner")
    assert r.exit_code == 0, r.output
    signed = tmp_path / "dummy_plugin.signed.difypkg"
    with zipfile.ZipFile(signed) as zf:
        assert zf.infolist()[-1].filename == ".verification.dify.json"
        assert zf.read(".verification.dify.json") == b'{"authorized_category":"partner"}'
    r = run("verify", signed, "--format", "dify", "--key", keys / "acme.public.pem")
    assert r.exit_code == 0, r.output
    r = run("verify", signed, "--format", "dify")  # the marketplace key only
    assert r.exit_code == 1 and "unknown-key" in r.output


def test_official_vector_verifies_with_and_without_format(vectors: Path, home: Path) -> None:
    for args in (["--format", "dify"], []):
        r = run("verify", vectors / "dify" / AGENT, *args)
        assert r.exit_code == 0, r.output
        assert "dify" in r.output


def test_unsigned_vector(vectors: Path, home: Path) -> None:
    r = run("verify", vectors / "dify" / "openai.difypkg", "--format", "dify")
    assert r.exit_code == 1 and "unsigned" in r.output


def test_category_limited_trust_entry_refuses_bigger_claims(
    keys: Path, vectors: Path, tmp_path: Path, home: Path
) -> None:
    r = run("trust", "add", keys / "acme.public.pem", "--name", "acme", "--category", "partner")
    assert r.exit_code == 0, r.output
    claims_official = tmp_path / "claims-langgenius.difypkg"
    r = run(
        "sign", vectors / "dify" / "dummy_plugin.difypkg", "--format", "dify",
        "--key", keys / "acme.private.pem", "--output", claims_official,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    plugins = tmp_path / "plugins"
    r = run("install", claims_official, "--plugins-dir", plugins)
    assert r.exit_code == 1 and "policy-violation" in r.output
    partner = tmp_path / "partner.difypkg"
    run(
        "sign", vectors / "dify" / "dummy_plugin.difypkg", "--format", "dify",
        "--key", keys / "acme.private.pem", "--output", partner, "--category", "partner",
    )  # fmt: skip
    r = run("install", partner, "--plugins-dir", plugins)
    assert r.exit_code == 0 and "verified, signed by acme" in r.output
