"""X.509 chain validation for OCM signatures, and the two OCM conventions for the signature's ``issuer``.

Validation is done at the current time (not at the leaf's notBefore, as the legacy Go library does), up to a
root the caller names, with the leaf required to carry the DigitalSignature key usage and the CodeSigning
extended key usage. Reasons: a chain that does not reach a given root is ``unknown-key``, a certificate outside
its validity is ``expired-key``, a wrong key usage or an issuer mismatch is ``policy-violation``.

DN parsing and PEM reading live in :mod:`signery.x509`; ``parse_dn`` and ``load_pem_certificates`` stay importable
from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import MalformedError, PolicyViolationError, Reason, VerificationError
from ..x509 import load_pem_certificates, parse_dn

MAX_CHAIN_LENGTH = 8  # real code-signing chains are 2-4 certificates; longer ones only cost verification time
IssuerConvention = Literal["auto", "subject", "issuer"]
ISSUER_CONVENTIONS: tuple[IssuerConvention, ...] = ("auto", "subject", "issuer")


def _pairs(name: x509.Name) -> list[tuple[x509.ObjectIdentifier, str]]:
    return [(a.oid, str(a.value)) for a in name]


def matches_subject(pattern: str, cert: x509.Certificate) -> bool:
    """Legacy OCM (CLI): every attribute of ``pattern`` appears in the leaf's Subject."""
    have = Counter(_pairs(cert.subject))
    want = Counter(parse_dn(pattern))
    return all(have[k] >= n for k, n in want.items())


def matches_issuer(pattern: str, cert: x509.Certificate) -> bool:
    """OCM v2 library: ``pattern`` equals the leaf's Issuer DN, attribute order ignored."""
    return Counter(_pairs(cert.issuer)) == Counter(parse_dn(pattern))


def check_issuer(pattern: str, cert: x509.Certificate, *, convention: IssuerConvention = "auto") -> None:
    ok = {
        "subject": matches_subject(pattern, cert),
        "issuer": matches_issuer(pattern, cert),
    }
    if convention == "auto" and (ok["subject"] or ok["issuer"]):
        return
    if convention != "auto" and ok[convention]:
        return
    raise PolicyViolationError(
        f"issuer {pattern!r} matches neither the signing certificate's subject "
        f"({cert.subject.rfc4514_string()}) nor its issuer ({cert.issuer.rfc4514_string()})"
        if convention == "auto"
        else f"issuer {pattern!r} does not match the signing certificate's {convention} DN",
        subject="issuer",
    )


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        if child.issuer != parent.subject:  # parsed lazily: a damaged name raises here
            return False
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number}"


def _check_time(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise VerificationError(
            f"certificate {_describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}",
            reason=Reason.EXPIRED_KEY,
            subject=_describe(cert),
        )
    if now > cert.not_valid_after_utc:
        raise VerificationError(
            f"certificate {_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}",
            reason=Reason.EXPIRED_KEY,
            subject=_describe(cert),
        )


def _check_ca(cert: x509.Certificate, below: int) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise PolicyViolationError(f"certificate {_describe(cert)} is not a CA", subject=_describe(cert))
    if bc.path_length is not None and below > bc.path_length:
        raise PolicyViolationError(f"path length of {_describe(cert)} exceeded", subject=_describe(cert))
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise PolicyViolationError(f"CA {_describe(cert)} may not sign certificates", subject=_describe(cert))


def _check_leaf_usage(leaf: x509.Certificate) -> None:
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        digital = ku.digital_signature
    except x509.ExtensionNotFound:
        digital = False
    if not digital:
        raise PolicyViolationError(
            f"certificate {_describe(leaf)} does not allow digital signatures (key usage)", subject=_describe(leaf)
        )
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        code_signing = ExtendedKeyUsageOID.CODE_SIGNING in eku
    except x509.ExtensionNotFound:
        code_signing = False
    if not code_signing:
        raise PolicyViolationError(
            f"certificate {_describe(leaf)} is not for code signing (extended key usage)", subject=_describe(leaf)
        )


def validate_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    now: datetime | None = None,
) -> x509.Certificate:
    """Validate ``chain`` (leaf first, intermediates in any order) up to one of ``roots``; return the leaf.

    Self-signed certificates inside ``chain`` are never trust anchors: only ``roots`` are.
    """
    try:
        return _validate_chain(chain, roots, now=now)
    except ValueError as exc:  # cryptography parses names and extensions lazily: a damaged one raises on use
        raise MalformedError(f"a certificate in the chain cannot be parsed ({exc})", subject="certificate") from None


def _validate_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    now: datetime | None = None,
) -> x509.Certificate:
    if not chain:
        raise MalformedError("no signing certificate to validate", subject="certificate")
    if not roots:
        raise MalformedError("no root certificate given", subject="--ca-cert")
    now = now or datetime.now(UTC)
    leaf = chain[0]
    pool = [c for c in chain[1:] if not _self_signed(c)]
    path = [leaf]
    current = leaf
    anchor: x509.Certificate | None = None
    while anchor is None:
        if len(path) > MAX_CHAIN_LENGTH:
            raise VerificationError("certificate chain too long", reason=Reason.UNKNOWN_KEY, subject=_describe(leaf))
        anchor = next((r for r in roots if _issued_by(current, r)), None)
        if anchor is None and any(current == r for r in roots):
            anchor = current  # the leaf or an intermediate is itself a given root
        if anchor is not None:
            break
        parent = next((c for c in pool if c not in path and _issued_by(current, c)), None)
        if parent is None:
            raise VerificationError(
                f"certificate {_describe(current)} does not chain to a given root "
                f"(issuer {current.issuer.rfc4514_string()})",
                reason=Reason.UNKNOWN_KEY,
                subject=_describe(leaf),
            )
        path.append(parent)
        current = parent
    full = path if anchor in path else [*path, anchor]
    for cert in full:
        _check_time(cert, now)
    for depth, cert in enumerate(full[1:]):
        _check_ca(cert, below=depth)
    _check_leaf_usage(leaf)
    return leaf


__all__ = [
    "ISSUER_CONVENTIONS",
    "MAX_CHAIN_LENGTH",
    "IssuerConvention",
    "check_issuer",
    "load_pem_certificates",
    "matches_issuer",
    "matches_subject",
    "parse_dn",
    "validate_chain",
]
