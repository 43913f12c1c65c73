"""The signery CA library: roots, intermediates, code-signing leaves, and their files."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signery import x509 as signery_x509
from signery import x509ca
from signery.errors import UsageError
from signery.keys import generate_private_key


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


def _extensions(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, tuple[bool, object]]:
    skip = (x509.SubjectKeyIdentifier.oid, x509.AuthorityKeyIdentifier.oid)
    return {e.oid: (e.critical, e.value) for e in cert.extensions if e.oid not in skip}


def test_one_issuance_rule_for_the_ca_and_the_service_templates() -> None:
    """``signery ca`` and the signing service's templates make certificates through one builder: the same serial
    numbers, the same validity, the same extensions for the same profile."""
    before = datetime.now(UTC).replace(microsecond=0)
    root = x509ca.create_root("/CN=Root", key_type="ecdsa-p256")
    leaf = x509ca.issue(root, "/CN=leaf", key_type="ecdsa-p256", days=30)
    key = generate_private_key("ecdsa-p256")
    service_leaf = signery_x509.build_certificate(
        template="code-signing",
        subject=signery_x509.parse_subject("CN=leaf"),
        public_key=key.public_key(),
        issuer_key=root.key,
        issuer_certificate=root.certificate,
        days=30,
    )
    after = datetime.now(UTC)
    for cert in (root.certificate, leaf.certificate, service_leaf):
        assert 64 < cert.serial_number.bit_length() <= 159  # positive, random, within RFC 5280's 20 octets
        start = cert.not_valid_before_utc
        assert before - signery_x509.BACKDATE - timedelta(seconds=1) <= start <= after - signery_x509.BACKDATE
    assert leaf.certificate.serial_number != service_leaf.serial_number
    for cert in (leaf.certificate, service_leaf):
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30) + signery_x509.BACKDATE
    assert _extensions(leaf.certificate) == _extensions(service_leaf)
    service_leaf.verify_directly_issued_by(root.certificate)


def test_profiles_are_the_templates() -> None:
    assert set(signery_x509.TEMPLATES) == set(signery_x509.PROFILES)
    ca = x509ca.create_root("/CN=Root", key_type="ed25519")
    inter = x509ca.create_intermediate(ca, "/CN=Inter", key_type="ed25519", path_length=2)
    bc = inter.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    ku = inter.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert bc.ca and bc.path_length == 2 and ku.key_cert_sign and ku.crl_sign
    with pytest.raises(UsageError, match="days must be between"):
        x509ca.issue(ca, "/CN=x", days=signery_x509.MAX_DAYS + 1)
    with pytest.raises(UsageError, match="self-signed"):
        signery_x509.build_certificate(
            template="root-ca",
            subject=signery_x509.parse_subject("CN=r"),
            public_key=inter.key.public_key(),
            issuer_key=ca.key,
            issuer_certificate=ca.certificate,
            days=1,
        )


def test_names_and_pem_bundles_live_in_signery_x509() -> None:
    from signery.ocm import x509chain

    assert x509chain.parse_dn is signery_x509.parse_dn
    assert x509chain.load_pem_certificates is signery_x509.load_pem_certificates
    name = signery_x509.name_from_dn("/CN=acme.org/O=ACME")
    assert name == signery_x509.parse_subject("/CN=acme.org/O=ACME") == signery_x509.parse_subject("O=ACME,CN=acme.org")
    root = x509ca.create_root("/CN=Root", key_type="ed25519")
    assert signery_x509.load_pem_certificates(root.chain_pem(), source="root") == [root.certificate]
