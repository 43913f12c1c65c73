"""Signing with a certificate chain (PEM form) and verifying it against trusted X.509 roots: the chain rules and
the issuer conventions, through the OCM format and a trust set made of certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from ocm_helpers import cert_trust, make_archive, ocm_sign, ocm_verify, trust_of

from signery import x509ca
from signery.errors import MalformedError, Reason, UsageError
from signery.keys import FileSigner, key_id
from signery.ocm import open_component_version, sign_component_version, verify_component_version
from signery.ocm.signing import MEDIA_PEM
from signery.ocm.x509chain import matches_issuer, matches_subject, parse_dn, validate_chain
from signery.trust import TrustSet


def _chain_file(tmp_path: Path, ident: x509ca.CertifiedKey) -> Path:
    path = tmp_path / "chain.pem"
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in ident.chain))
    return path


def _sign(tmp_path: Path, ident: x509ca.CertifiedKey, **kw: Any) -> tuple[Path, dict[str, Any]]:
    path = make_archive(tmp_path / "ca")
    entry = ocm_sign(path, ident.key, signature_name="acme", chain=_chain_file(tmp_path, ident), **kw)
    return path, entry


def _roots(tmp_path: Path, pki: Any, *names: str, **constraints: Any) -> TrustSet:
    return cert_trust(tmp_path / "anchors", *(pki[n].certificate for n in names or ("root",)), **constraints)


@pytest.mark.parametrize("algorithm", ["RSASSA-PKCS1-V1_5", "RSASSA-PSS"])
def test_three_level_chain_round_trip_needs_only_the_root(tmp_path: Path, pki: Any, algorithm: str) -> None:
    path, entry = _sign(tmp_path, pki["leaf"], algorithm=algorithm)
    sig = entry["signature"]
    assert sig["mediaType"] == MEDIA_PEM
    assert sig["value"].startswith(f"-----BEGIN SIGNATURE-----\nSignature Algorithm: {algorithm}\n\n")
    assert sig["value"].count("BEGIN CERTIFICATE") == 2  # leaf + intermediate, leaf first; never the root
    assert sig["issuer"] == "O=ACME,CN=acme.org"  # legacy convention: the leaf's subject
    trust = _roots(tmp_path, pki)
    result = ocm_verify(path, trust)
    assert result.verified, result.message
    check = result.signatures[0]
    root = next(iter(trust))
    assert check.key_id == root.key_id and check.key_name == "root0"  # the trusted anchor, for thresholds
    assert check.claims["certificate"] == "O=ACME,CN=acme.org"
    assert check.claims["root"] == "O=ACME,CN=ACME Root CA"
    assert check.claims["signer_key_id"] == key_id(pki["leaf"].key.public_key())


def test_the_root_must_be_a_certificate_not_just_its_key(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["leaf"])
    assert ocm_verify(path, trust_of(pki["root"].certificate.public_key())).reason is Reason.UNKNOWN_KEY


def test_an_intermediate_can_be_the_anchor(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["leaf"])
    assert ocm_verify(path, _roots(tmp_path, pki, "intermediate")).verified


def test_certificate_from_another_root_is_unknown_key(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["other_leaf"])
    result = ocm_verify(path, _roots(tmp_path, pki))
    assert result.reason is Reason.UNKNOWN_KEY and "O=ACME,CN=acme.org" in result.message


def test_expired_certificate_is_expired_key(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["expired"])
    assert ocm_verify(path, _roots(tmp_path, pki)).reason is Reason.EXPIRED_KEY


def test_validity_is_checked_now_not_at_not_before(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["leaf"])
    later = datetime.now(UTC) + timedelta(days=400)
    assert ocm_verify(path, _roots(tmp_path, pki), now=later).reason is Reason.EXPIRED_KEY


def test_certificate_without_code_signing_is_policy_violation(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["no_code_signing"])
    result = ocm_verify(path, _roots(tmp_path, pki))
    assert result.reason is Reason.POLICY_VIOLATION
    assert "code signing" in result.message


def test_root_trusted_only_for_another_format_is_policy_violation(tmp_path: Path, pki: Any) -> None:
    path, _ = _sign(tmp_path, pki["leaf"])
    assert ocm_verify(path, _roots(tmp_path, pki, formats=("ocm",))).verified
    result = ocm_verify(path, _roots(tmp_path, pki, formats=("native",)))
    assert result.reason is Reason.POLICY_VIOLATION and "formats native" in result.message
    assert ocm_verify(path, _roots(tmp_path, pki, names=("acme.org/*",))).verified
    assert ocm_verify(path, _roots(tmp_path, pki, names=("evil.org/*",))).reason is Reason.POLICY_VIOLATION


def test_issuer_conventions(tmp_path: Path, pki: Any) -> None:
    trust = _roots(tmp_path, pki)
    path, entry = _sign(tmp_path / "1", pki["leaf"], issuer_convention="issuer")
    assert entry["signature"]["issuer"] == "O=ACME,CN=ACME Signing CA"  # v2 library: the leaf's issuer
    assert ocm_verify(path, trust).verified  # either convention is accepted
    path, _ = _sign(tmp_path / "2", pki["leaf"], issuer="CN=someone.else")
    assert ocm_verify(path, trust).reason is Reason.POLICY_VIOLATION
    path, _ = _sign(tmp_path / "3", pki["leaf"], issuer="acme.org")  # a bare string is a CN (legacy)
    assert ocm_verify(path, trust).verified


def test_issuer_conventions_of_the_library(tmp_path: Path, pki: Any) -> None:
    """Insisting on one convention, or on an extra DN, is the library's (`verify_component_version`)."""
    root = [pki["root"].certificate]
    path, _ = _sign(tmp_path, pki["leaf"], issuer_convention="issuer")
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="acme", roots=root, issuer_convention="issuer").verified
    wrong = verify_component_version(cv, signature="acme", roots=root, issuer_convention="subject")
    assert wrong.reason is Reason.POLICY_VIOLATION
    expected = verify_component_version(cv, signature="acme", roots=root, issuer="CN=acme.org,O=Other")
    assert expected.reason is Reason.POLICY_VIOLATION


def test_trusted_leaf_key_verifies_a_pem_signature_directly(tmp_path: Path, pki: Any, rsa_key: Any) -> None:
    path, _ = _sign(tmp_path, pki["leaf"])
    check = ocm_verify(path, trust_of(pki["leaf"].key)).signatures[0]
    assert check.valid and check.key_id == key_id(pki["leaf"].key.public_key())
    assert ocm_verify(path, trust_of(rsa_key)).reason is Reason.UNKNOWN_KEY
    assert ocm_verify(path, cert_trust(tmp_path / "leafcert", pki["leaf"].certificate)).verified


def test_expired_and_revoked_trust_entries(tmp_path: Path, pki: Any) -> None:
    from dataclasses import replace

    path, _ = _sign(tmp_path, pki["leaf"])
    (root,) = _roots(tmp_path, pki)
    assert ocm_verify(path, TrustSet([replace(root, revoked=True)])).reason is Reason.REVOKED_KEY
    past = datetime.now(UTC) - timedelta(days=1)
    assert ocm_verify(path, TrustSet([replace(root, expires=past)])).reason is Reason.EXPIRED_KEY


def test_plain_signature_verified_with_separate_chain(tmp_path: Path, pki: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, pki["leaf"].key, signature_name="acme")
    assert ocm_verify(path, _roots(tmp_path, pki)).reason is Reason.UNKNOWN_KEY  # no chain to follow
    cv, _ = open_component_version(path)
    root = [pki["root"].certificate]
    assert verify_component_version(cv, signature="acme", roots=root).reason is Reason.UNKNOWN_KEY
    assert verify_component_version(cv, signature="acme", roots=root, certificates=pki["leaf"].chain).verified


def test_certificate_must_certify_the_signing_key(tmp_path: Path, pki: Any, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    with pytest.raises(UsageError) as exc:
        ocm_sign(path, rsa_key, chain=_chain_file(tmp_path, pki["leaf"]))
    assert exc.value.subject == "--chain"
    with pytest.raises(UsageError):
        ocm_sign(path, rsa_key, chain=tmp_path / "missing.pem")


def test_substituted_leaf_in_pem_is_bad_signature(tmp_path: Path, pki: Any) -> None:
    """Swapping the embedded leaf for another valid leaf of the same CA does not make the signature verify."""
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    entry = sign_component_version(cv, FileSigner(pki["leaf"].key), name="acme", certificates=pki["leaf"].chain)
    other = x509ca.issue(pki["intermediate"], "/CN=acme.org/O=ACME")
    value = entry["signature"]["value"]
    head = value[: value.index("-----BEGIN CERTIFICATE-----")]
    forged = head + "".join(c.public_bytes(Encoding.PEM).decode() for c in other.chain)
    cv.descriptor.signature("acme")["signature"]["value"] = forged  # type: ignore[index]
    cv.save()
    assert ocm_verify(path, _roots(tmp_path, pki)).reason is Reason.BAD_SIGNATURE


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
