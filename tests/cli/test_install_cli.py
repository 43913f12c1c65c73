"""``signery install`` and ``signery plugins`` through the command line: exit codes, messages, JSON."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa

from signery.cli import cli
from signery.formats import dify
from signery.keys import FileSigner, generate_private_key, public_key_pem
from signery.policy import ENV_VARS

AGENT = "langgenius-agent_0.0.14.difypkg"


def run(*args: object, env: dict[str, str | None] | None = None) -> Result:
    clean: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    clean.update(env or {})
    return CliRunner().invoke(cli, [str(a) for a in args], env=clean, catch_exceptions=False)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    k = generate_private_key("rsa-2048")
    assert isinstance(k, rsa.RSAPrivateKey)
    return k


@pytest.fixture()
def trusted(key: rsa.RSAPrivateKey, home: Path, tmp_path: Path) -> Path:
    pem = tmp_path / "acme.public.pem"
    pem.write_bytes(public_key_pem(key.public_key(), fmt="pkcs1"))
    r = run("trust", "add", pem, "--name", "acme")
    assert r.exit_code == 0, r.output
    return pem


def package(tmp_path: Path, version: str, *, key: rsa.RSAPrivateKey | None = None) -> Path:
    src = tmp_path / f"hello-{version}.difypkg"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("manifest.yaml", f"version: {version}\nauthor: acme\nname: hello\n")
        zf.writestr("main.py", f"print('{version}')\n")
    if key is None:
        return src
    return dify.sign(src, FileSigner(key))


def test_install_list_check_remove(tmp_path: Path, key: rsa.RSAPrivateKey, trusted: Path) -> None:
    plugins = tmp_path / "plugins"
    r = run("install", package(tmp_path, "1.0.0", key=key), "--plugins-dir", plugins, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["ok"] and doc["record"]["status"] == "verified" and doc["record"]["signer_key_name"] == "acme"
    r = run("plugins", "list", "--plugins-dir", plugins, "--json")
    (item,) = json.loads(r.output)["plugins"]
    assert item["name"] == "hello" and item["version"] == "1.0.0" and item["signer_key_id"]
    r = run("plugins", "list", "--plugins-dir", plugins)
    assert "hello" in r.output and "verified" in r.output and "acme" in r.output
    assert run("plugins", "check", "--plugins-dir", plugins).exit_code == 0
    r = run("plugins", "remove", "hello", "--plugins-dir", plugins)
    assert r.exit_code == 0 and "removed hello 1.0.0" in r.output
    assert "no plugins installed" in run("plugins", "list", "--plugins-dir", plugins).output


def test_unsigned_refused_by_default_naming_reason_and_setting(tmp_path: Path, home: Path) -> None:
    r = run("install", package(tmp_path, "1.0.0"), "--plugins-dir", tmp_path / "p", "--allow-unverified")
    assert r.exit_code == 1
    assert "unsigned" in r.output and "force_verifying_signature" in r.output
    r = run("install", package(tmp_path, "1.0.0"), "--plugins-dir", tmp_path / "p", "--json")
    assert json.loads(r.output)["reason"] == "unsigned"


def test_not_forced_installs_unverified_until_forced(tmp_path: Path, home: Path) -> None:
    plugins = tmp_path / "plugins"
    lax = {"FORCE_VERIFYING_SIGNATURE": "false"}
    r = run("install", package(tmp_path, "1.0.0"), "--plugins-dir", plugins, "--allow-unverified", env=lax)
    assert r.exit_code == 0 and "UNVERIFIED (unsigned)" in r.output
    assert "unverified" in run("plugins", "list", "--plugins-dir", plugins).output
    assert run("plugins", "check", "--plugins-dir", plugins, env=lax).exit_code == 0
    r = run("plugins", "check", "--plugins-dir", plugins)  # verification forced again (the default)
    assert r.exit_code == 1 and "hello" in r.output and "unsigned" in r.output
    r = run("plugins", "check", "--plugins-dir", plugins, "--json")
    assert r.exit_code == 1 and json.loads(r.output)["plugins"][0]["reason"] == "unsigned"


def test_policy_file_and_environment(tmp_path: Path, home: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("force_verifying_signature = false\n")
    pkg = package(tmp_path, "1.0.0")
    r = run("install", pkg, "--plugins-dir", tmp_path / "a", "--policy", policy, "--allow-unverified")
    assert r.exit_code == 0, r.output
    env = {"FORCE_VERIFYING_SIGNATURE": "true"}
    r = run("install", pkg, "--plugins-dir", tmp_path / "b", "--policy", policy, "--allow-unverified", env=env)
    assert r.exit_code == 1 and "FORCE_VERIFYING_SIGNATURE" in r.output
    (home / "policy.toml").write_text("force_verifying_signature = false\n")  # the default location
    assert run("install", pkg, "--plugins-dir", tmp_path / "c", "--allow-unverified").exit_code == 0


def test_missing_key_file_is_exit_3_before_any_package(tmp_path: Path, vectors: Path, home: Path) -> None:
    missing = tmp_path / "partner.pem"
    env = {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "true",
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS": f" {missing} ",
    }
    r = run("install", vectors / "dify" / AGENT, "--plugins-dir", tmp_path / "p", env=env)
    assert r.exit_code == 3
    assert "config-error" in r.output and str(missing) in r.output
    assert "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS" in r.output
    assert not (tmp_path / "p").exists()
    r = run("install", vectors / "dify" / AGENT, "--plugins-dir", tmp_path / "p", "--policy", tmp_path / "nope.toml")
    assert r.exit_code == 3
    r = run("install", vectors / "dify" / AGENT, "--plugins-dir", tmp_path / "p")
    assert r.exit_code == 0 and "dify-marketplace" in r.output


def test_downgrade_needs_the_flag(tmp_path: Path, key: rsa.RSAPrivateKey, trusted: Path) -> None:
    plugins = tmp_path / "plugins"
    assert run("install", package(tmp_path, "2.0.0", key=key), "--plugins-dir", plugins).exit_code == 0
    older = package(tmp_path, "1.0.0", key=key)
    r = run("install", older, "--plugins-dir", plugins)
    assert r.exit_code == 1 and "policy-violation" in r.output and "older" in r.output
    assert run("install", older, "--plugins-dir", plugins, "--allow-downgrade").exit_code == 0


def test_usage_errors(tmp_path: Path, home: Path) -> None:
    r = run("install", "hello@1.0.0", "--plugins-dir", tmp_path / "p")
    assert r.exit_code == 2 and "--registry" in r.output
    r = run("plugins", "remove", "hello", "--plugins-dir", tmp_path)
    assert r.exit_code == 2 and "not installed" in r.output


def test_a_v_prefixed_version_is_malformed_as_in_the_registry(
    tmp_path: Path, key: rsa.RSAPrivateKey, trusted: Path
) -> None:
    plugins = tmp_path / "plugins"
    r = run("install", package(tmp_path, "v1.0.0", key=key), "--plugins-dir", plugins, "--json")
    assert r.exit_code == 2, r.output
    doc = json.loads(r.output)
    assert doc["ok"] is False and doc["reason"] == "malformed" and "not a version" in doc["message"]
    assert not plugins.exists()
    four = run("install", package(tmp_path, "1.0.0.1", key=key), "--plugins-dir", plugins)
    assert four.exit_code == 0, four.output
