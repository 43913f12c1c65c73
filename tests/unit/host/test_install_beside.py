"""The host finds what `verify` finds: detached signatures beside the user's package, in every format that detaches.

An Elastic package in its real layout (everything under ``name-version/``) with an armored OpenPGP ``.sig``
beside it, a native ``X.signery.json`` beside a plain ZIP, and the name claim bound for every format that has one.
"""

from __future__ import annotations

import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from signery import openpgp
from signery.errors import Reason, VerificationError
from signery.formats import get_format
from signery.host import install_package
from signery.host.install import signatures_beside
from signery.keys import FileSigner
from signery.policy import Policy
from signery.trust import TrustSet, load_trusted_key_file, trusted_key_from_public

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def _elastic(path: Path, name: str = "acme", version: str = "1.2.0") -> Path:
    root = f"{name}-{version}/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            root + "manifest.yml", f"format_version: 3.0.0\nname: {name}\nversion: {version}\ntype: integration\n"
        )
        zf.writestr(root + "docs/README.md", "# acme\n")
        zf.writestr(root + "data_stream/logs/manifest.yml", "title: logs\n")
    return path


@pytest.fixture(scope="module")
def release_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


def _pgp_trust(key: rsa.RSAPrivateKey, tmp_path: Path) -> TrustSet:
    cert = openpgp.certificate_from_private_key(key, uid="Elastic <security@example.org>", created=CREATED)
    p = tmp_path / "release.public.asc"
    p.write_text(cert)
    return TrustSet([replace(load_trusted_key_file(p).key, name="release")])


def test_elastic_layout_with_an_armored_sig_beside_installs(tmp_path: Path, release_key: rsa.RSAPrivateKey) -> None:
    pkg = _elastic(tmp_path / "acme-1.2.0.zip")
    signer = openpgp.signer_from_private_key(release_key, created=CREATED)
    sig = get_format("openpgp").sign(pkg, signer, options=get_format("openpgp").options(armor=True))
    assert sig == tmp_path / "acme-1.2.0.zip.sig" and sig.read_bytes().startswith(b"-----BEGIN PGP SIGNATURE")
    assert signatures_beside(pkg) == [sig]
    plugins = tmp_path / "plugins"
    record = install_package(pkg, plugins_dir=plugins, policy=Policy(), trust=_pgp_trust(release_key, tmp_path))
    assert (record.name, record.version, record.status, record.signature_format) == (
        "acme",
        "1.2.0",
        "verified",
        "openpgp",
    )
    # the package's own directory is the plugin's root: nothing of the `name-version/` wrapper is left
    assert (plugins / "acme" / "manifest.yml").is_file()
    assert (plugins / "acme" / "docs" / "README.md").read_text() == "# acme\n"


def test_a_tampered_elastic_package_is_refused_and_nothing_installed(
    tmp_path: Path, release_key: rsa.RSAPrivateKey
) -> None:
    pkg = _elastic(tmp_path / "acme-1.2.0.zip")
    signer = openpgp.signer_from_private_key(release_key, created=CREATED)
    get_format("openpgp").sign(pkg, signer, options=get_format("openpgp").options(armor=True))
    _elastic(pkg, version="1.2.0")  # rebuilt: other bytes (timestamps), same names
    with zipfile.ZipFile(pkg, "a") as zf:
        zf.writestr("acme-1.2.0/extra.txt", "x")
    plugins = tmp_path / "plugins"
    with pytest.raises(VerificationError) as info:
        install_package(pkg, plugins_dir=plugins, policy=Policy(), trust=_pgp_trust(release_key, tmp_path))
    assert info.value.reason is Reason.BAD_SIGNATURE
    for said in (info.value.message, info.value.subject or ""):
        assert "staging-" not in said, said  # the user's paths, never the staging copies
    assert not (plugins / "acme").exists()


def test_a_native_sidecar_beside_a_zip_is_found(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pkg = _elastic(tmp_path / "acme-1.2.0.zip")
    native = get_format("native")
    doc = native.sign(pkg, FileSigner(key), options=native.options(detached=True, claims={"name": "acme"}))
    assert signatures_beside(pkg) == [doc]
    trust = TrustSet([trusted_key_from_public(key.public_key(), name="alice")])
    record = install_package(pkg, plugins_dir=tmp_path / "plugins", policy=Policy(), trust=trust)
    assert record.status == "verified" and record.signature_format == "native"


def test_the_name_claim_is_bound_whatever_finds_the_signature(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pkg = _elastic(tmp_path / "acme-1.2.0.zip")
    native = get_format("native")
    native.sign(pkg, FileSigner(key), options=native.options(detached=True, claims={"name": "other"}))
    trust = TrustSet([trusted_key_from_public(key.public_key(), name="alice")])
    with pytest.raises(VerificationError) as info:
        install_package(pkg, plugins_dir=tmp_path / "plugins", policy=Policy(), trust=trust)
    assert info.value.reason is Reason.POLICY_VIOLATION and "not plugin 'acme'" in info.value.message
