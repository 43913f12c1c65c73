"""End to end through the real CLI: publish to a live registry, install from it, refuse what must be refused.

The registry is never trusted: every install is verified with the local trust store only, a missing signature is
`unsigned` (never a silent pass), a lower version is refused unless --allow-downgrade, and an air-gapped bundle
installs with its signatures intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signery.cli import cli
from signery.formats import native
from signery.keys import FileSigner, generate_private_key, save_key_pair

from .conftest import LiveRegistry, dify_package


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture()
def alice(tmp_path: Path) -> tuple[FileSigner, Path]:
    key = generate_private_key("ed25519")
    paths = save_key_pair(tmp_path / "alice.private.pem", tmp_path / "alice.public.pem", key)
    return FileSigner(key), paths.public


def signed(tmp: Path, signer: FileSigner, version: str) -> Path:
    pkg = dify_package(tmp, version=version, extra=version)
    return native.sign(pkg, signer, claims={"name": "demo", "version": version})


def publish(live: LiveRegistry, path: Path) -> None:
    result = run("publish", str(path), "--registry", live.url, env={"SIGNERY_REGISTRY_TOKEN": live.token})
    assert result.exit_code == 0, result.output


def installed(plugins: Path) -> dict[str, dict[str, object]]:
    doc = json.loads(run("plugins", "list", "--plugins-dir", str(plugins), "--json").output)
    items = doc["plugins"] if isinstance(doc, dict) else doc
    return {p["name"]: p for p in items}


def test_install_from_registry_verifies_locally_and_refuses_downgrade_and_unsigned(
    live: LiveRegistry, tmp_path: Path, home: Path, alice: tuple[FileSigner, Path]
) -> None:
    signer, public = alice
    publish(live, signed(tmp_path / "v1", signer, "1.0.0"))
    publish(live, signed(tmp_path / "v11", signer, "1.1.0"))
    plugins = tmp_path / "plugins"

    # Not yet trusted: the registry's word counts for nothing.
    refused = run("install", "demo@1.1.0", "--registry", live.url, "--plugins-dir", str(plugins), "--json")
    assert refused.exit_code == 1
    assert "unknown-key" in refused.output
    assert not installed(plugins)

    assert run("trust", "add", str(public), "--name", "alice").exit_code == 0
    ok = run("install", "demo@1.1.0", "--registry", live.url, "--plugins-dir", str(plugins))
    assert ok.exit_code == 0, ok.output
    record = installed(plugins)["demo"]
    assert record["version"] == "1.1.0"
    assert record["status"] == "verified"

    down = run("install", "demo@1.0.0", "--registry", live.url, "--plugins-dir", str(plugins))
    assert down.exit_code == 1
    assert "downgrade" in down.output.lower()
    assert installed(plugins)["demo"]["version"] == "1.1.0"  # the refused install changed nothing
    assert run("install", "demo@1.0.0", "--registry", live.url, "--plugins-dir", str(plugins),
               "--allow-downgrade").exit_code == 0
    assert installed(plugins)["demo"]["version"] == "1.0.0"

    # An unsigned version is `unsigned`, never a silent pass.
    publish(live, dify_package(tmp_path / "v2", version="2.0.0", extra="2.0.0"))
    unsigned = run("install", "demo@2.0.0", "--registry", live.url, "--plugins-dir", str(plugins), "--json")
    assert unsigned.exit_code == 1
    assert "unsigned" in unsigned.output
    assert installed(plugins)["demo"]["version"] == "1.0.0"


def test_air_gapped_bundle_installs_with_signatures_intact(
    live: LiveRegistry, tmp_path: Path, home: Path, alice: tuple[FileSigner, Path]
) -> None:
    signer, public = alice
    publish(live, signed(tmp_path / "v1", signer, "1.0.0"))
    bundle = tmp_path / "bundle.tar"
    exported = run("mirror", "export", "demo@1.0.0", "--registry", live.url, "--out", str(bundle))
    assert exported.exit_code == 0, exported.output
    assert run("trust", "add", str(public), "--name", "alice").exit_code == 0
    plugins = tmp_path / "offline-plugins"
    ok = run("install", "demo@1.0.0", "--from", str(bundle), "--plugins-dir", str(plugins))
    assert ok.exit_code == 0, ok.output
    assert installed(plugins)["demo"]["status"] == "verified"


def test_a_hostile_bundle_cannot_substitute_another_signed_plugin(
    tmp_path: Path, home: Path, alice: tuple[FileSigner, Path]
) -> None:
    """Asked for demo, a bundle (or registry) serves the bytes of another plugin the same key signed: refused."""
    import hashlib
    import io
    import tarfile

    signer, public = alice
    other = native.sign(dify_package(tmp_path / "o", name="other"), signer, claims={"name": "other"})
    data = other.read_bytes()
    index = {
        "name": "demo",
        "version": "1.0.0",
        "filename": "demo-1.0.0.difypkg",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    bundle = tmp_path / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        for name, blob in (
            ("index.json", json.dumps({"format": "signery-bundle/1", "packages": [index]}).encode()),
            ("packages/demo/1.0.0/demo-1.0.0.difypkg", data),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    assert run("trust", "add", str(public), "--name", "alice").exit_code == 0
    plugins = tmp_path / "plugins"
    refused = run("install", "demo@1.0.0", "--from", str(bundle), "--plugins-dir", str(plugins))
    assert refused.exit_code == 1, refused.output
    assert "other" in refused.output and "demo" in refused.output
    assert not (plugins / "other").exists()
