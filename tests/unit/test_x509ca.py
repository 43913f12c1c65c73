"""The signery CA library: roots, intermediates, code-signing leaves, and their files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signery import x509ca
from signery.errors import UsageError


def test_three_levels_written_and_read_back(tmp_path: Path) -> None:
    root = x509ca.create_root("/CN=ACME Root CA")
    inter = x509ca.create_intermediate(root, "/CN=ACME Signing CA")
    leaf = x509ca.issue(inter, "/CN=acme.org/O=ACME")
    cert_path, key_path = x509ca.save(leaf, tmp_path / "acme")
    assert cert_path.name == "acme.cert.pem" and key_path.name == "acme.key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    back = x509ca.load(tmp_path / "acme")
    assert [c.subject for c in back.chain] == [leaf.certificate.subject, inter.certificate.subject]
    c = back.certificate
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme.org"
    assert c.subject.rfc4514_string() == "O=ACME,CN=acme.org"
    assert ExtendedKeyUsageOID.CODE_SIGNING in c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert c.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    bc = inter.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    leaf.certificate.verify_directly_issued_by(inter.certificate)
    inter.certificate.verify_directly_issued_by(root.certificate)


def test_no_code_signing_leaf_has_no_eku() -> None:
    root = x509ca.create_root("CN=Root")
    leaf = x509ca.issue(root, "CN=x", code_signing=False)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_refuses_to_overwrite_and_bad_input(tmp_path: Path) -> None:
    root = x509ca.create_root("/CN=Root")
    x509ca.save(root, tmp_path / "root")
    with pytest.raises(UsageError):
        x509ca.save(root, tmp_path / "root")
    with pytest.raises(UsageError):
        x509ca.create_root("/CN=Root", days=0)
    with pytest.raises(UsageError):
        x509ca.load(tmp_path / "missing")


def test_mismatched_key_and_chain_are_refused(tmp_path: Path) -> None:
    a, b = x509ca.create_root("/CN=A"), x509ca.create_root("/CN=B")
    x509ca.save(a, tmp_path / "a")
    (tmp_path / "a.key.pem").write_bytes((tmp_path / "a.key.pem").read_bytes())
    x509ca.save(b, tmp_path / "b")
    (tmp_path / "a.cert.pem").write_bytes((tmp_path / "b.cert.pem").read_bytes())
    with pytest.raises(Exception, match="does not belong"):
        x509ca.load(tmp_path / "a")
