"""Signing with a certificate chain (PEM form) and verifying against a root: the X.509 rules and issuer conventions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocm_helpers import make_archive

from signery import x509ca
from signery.errors import MalformedError, Reason, UsageError
from signery.keys import FileSigner
from signery.ocm import open_component_version, sign_component_version, verify_component_version
from signery.ocm.signing import MEDIA_PEM
from signery.ocm.x509chain import matches_issuer, matches_subject, parse_dn, validate_chain


def _sign(tmp_path: Path, ident: x509ca.CertifiedKey, **kw: Any) -> tuple[Any, dict[str, Any]]:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    entry = sign_component_version(cv, FileSigner(ident.key), name="acme", certificates=ident.chain, **kw)
    cv, _ = open_component_version(path)
    return cv, entry


@pytest.mark.parametrize("algorithm", ["RSASSA-PKCS1-V1_5", "RSASSA-PSS"])
def test_three_level_chain_round_trip_needs_only_the_root(tmp_path: Path, pki: Any, algorithm: str) -> None:
    cv, entry = _sign(tmp_path, pki["leaf"], algorithm=algorithm)
    sig = entry["signature"]
    assert sig["mediaType"] == MEDIA_PEM
    assert sig["value"].startswith(f"-----BEGIN SIGNATURE-----\nSignature Algorithm: {algorithm}\n\n")
    assert sig["value"].count("BEGIN CERTIFICATE") == 2  # leaf + intermediate, leaf first; never the root
    assert sig["issuer"] == "O=ACME,CN=acme.org"  # legacy convention: the leaf's subject
    result = verify_component_version(cv, signature="acme", roots=[pki["root"].certificate])
    assert result.verified, result.message
    assert result.signatures[0].claims["certificate"] == "O=ACME,CN=acme.org"


def test_certificate_from_another_root_is_unknown_key(tmp_path: Path, pki: Any) -> None:
    cv, _ = _sign(tmp_path, pki["other_leaf"])
    result = verify_component_version(cv, signature="acme", roots=[pki["root"].certificate])
    assert result.reason is Reason.UNKNOWN_KEY


def test_expired_certificate_is_expired_key(tmp_path: Path, pki: Any) -> None:
    cv, _ = _sign(tmp_path, pki["expired"])
    result = verify_component_version(cv, signature="acme", roots=[pki["root"].certificate])
    assert result.reason is Reason.EXPIRED_KEY


def test_validity_is_checked_now_not_at_not_before(tmp_path: Path, pki: Any) -> None:
    cv, _ = _sign(tmp_path, pki["leaf"])
    later = datetime.now(UTC) + timedelta(days=400)
    result = verify_component_version(cv, signature="acme", roots=[pki["root"].certificate], now=later)
    assert result.reason is Reason.EXPIRED_KEY


def test_certificate_without_code_signing_is_policy_violation(tmp_path: Path, pki: Any) -> None:
    cv, _ = _sign(tmp_path, pki["no_code_signing"])
    result = verify_component_version(cv, signature="acme", roots=[pki["root"].certificate])
    assert result.reason is Reason.POLICY_VIOLATION
    assert "code signing" in result.message


def test_issuer_conventions(tmp_path: Path, pki: Any) -> None:
    root = [pki["root"].certificate]
    cv, entry = _sign(tmp_path, pki["leaf"], issuer_mode="issuer")
    assert entry["signature"]["issuer"] == "O=ACME,CN=ACME Signing CA"  # v2 library: the leaf's issuer
    assert verify_component_version(cv, signature="acme", roots=root).verified
    assert verify_component_version(cv, signature="acme", roots=root, issuer_convention="issuer").verified
    wrong = verify_component_version(cv, signature="acme", roots=root, issuer_convention="subject")
    assert wrong.reason is Reason.POLICY_VIOLATION
    cv, _ = _sign(tmp_path / "2", pki["leaf"], issuer="CN=someone.else")
    assert verify_component_version(cv, signature="acme", roots=root).reason is Reason.POLICY_VIOLATION
    cv, _ = _sign(tmp_path / "3", pki["leaf"], issuer="acme.org")  # a bare string is a CN (legacy)
    assert verify_component_version(cv, signature="acme", roots=root, issuer_convention="subject").verified
    expected = verify_component_version(cv, signature="acme", roots=root, issuer="CN=acme.org,O=Other")
    assert expected.reason is Reason.POLICY_VIOLATION


def test_public_key_verification_of_a_pem_signature(tmp_path: Path, pki: Any, rsa_key: Any) -> None:
    cv, _ = _sign(tmp_path, pki["leaf"])
    assert verify_component_version(cv, signature="acme", public_key=pki["leaf"].key.public_key()).verified
    assert (
        verify_component_version(cv, signature="acme", public_key=rsa_key.public_key()).reason is Reason.BAD_SIGNATURE
    )


def test_plain_signature_verified_with_separate_chain(tmp_path: Path, pki: Any) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(pki["leaf"].key), name="acme")
    root = [pki["root"].certificate]
    assert verify_component_version(cv, signature="acme", roots=root).reason is Reason.UNKNOWN_KEY
    assert verify_component_version(cv, signature="acme", roots=root, certificates=pki["leaf"].chain).verified


def test_certificate_must_certify_the_signing_key(tmp_path: Path, pki: Any, rsa_key: Any) -> None:
    cv, _ = open_component_version(make_archive(tmp_path / "ca"))
    with pytest.raises(UsageError):
        sign_component_version(cv, FileSigner(rsa_key), name="acme", certificates=pki["leaf"].chain)


def test_substituted_leaf_in_pem_is_refused(tmp_path: Path, pki: Any) -> None:
    """Swapping the embedded leaf for another valid leaf of the same CA does not make the signature verify."""
    cv, entry = _sign(tmp_path, pki["leaf"])
    other = x509ca.issue(pki["intermediate"], "/CN=acme.org/O=ACME")
    value = entry["signature"]["value"]
    head = value[: value.index("-----BEGIN CERTIFICATE-----")]
    from cryptography.hazmat.primitives.serialization import Encoding

    forged = head + "".join(c.public_bytes(Encoding.PEM).decode() for c in other.chain)
    cv.descriptor.signature("acme")["signature"]["value"] = forged  # type: ignore[index]
    result = verify_component_version(cv, signature="acme", roots=[pki["root"].certificate])
    assert result.reason is Reason.BAD_SIGNATURE


def test_self_signed_certificates_in_the_chain_are_not_anchors(pki: Any) -> None:
    evil_root = pki["other_root"].certificate
    with pytest.raises(Exception) as exc:
        validate_chain([pki["other_leaf"].certificate, evil_root], [pki["root"].certificate])
    assert getattr(exc.value, "reason", None) is Reason.UNKNOWN_KEY


def test_intermediate_that_is_not_a_ca_is_refused(pki: Any) -> None:
    fake_ca = x509ca.issue(pki["intermediate"], "/CN=Fake CA")  # a leaf acting as a CA
    victim = x509ca.issue(fake_ca, "/CN=victim")
    with pytest.raises(Exception) as exc:
        validate_chain(list(victim.chain), [pki["root"].certificate])
    assert getattr(exc.value, "reason", None) is Reason.POLICY_VIOLATION


def test_dn_parsing_and_matching(pki: Any) -> None:
    leaf = pki["leaf"].certificate
    assert parse_dn("/CN=a/O=b") == parse_dn("CN=a,O=b")
    assert matches_subject("CN=acme.org", leaf) and matches_subject("O=ACME,CN=acme.org", leaf)
    assert not matches_subject("CN=acme.org,OU=x", leaf)
    assert matches_issuer("CN=ACME Signing CA,O=ACME", leaf) and not matches_issuer("CN=ACME Signing CA", leaf)
    with pytest.raises(MalformedError):
        parse_dn("XX=1")
