"""X.509 certificate templates: root and intermediate CAs, a code-signing leaf, UEFI Secure Boot PK/KEK/db, kmod.

The Secure Boot and kmod templates follow what balenaSign produces (``openssl req -x509``) and what the kernel's
``certs/default_x509.genkey`` asks for: digitalSignature + codeSigning for signing certificates, CA:TRUE for the
certificates that sign other signature lists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import UsageError
from ..keys import PrivateKey, PublicKey

Template = Literal[
    "root-ca", "intermediate-ca", "code-signing", "secureboot-pk", "secureboot-kek", "secureboot-db", "kmod"
]
TEMPLATES: tuple[Template, ...] = (
    "root-ca",
    "intermediate-ca",
    "code-signing",
    "secureboot-pk",
    "secureboot-kek",
    "secureboot-db",
    "kmod",
)
MAX_DAYS = 36_525  # 100 years; certificates this long-lived already outlive any policy
MAX_SUBJECT_CHARS = 1024  # a distinguished name is a few attributes, not a document


@dataclass(frozen=True)
class _Profile:
    ca: bool
    path_length: int | None
    cert_sign: bool
    code_signing: bool
    needs_issuer: bool
    self_signed_only: bool
    default_algorithm: str


_PROFILES: dict[str, _Profile] = {
    "root-ca": _Profile(True, None, True, False, False, True, "rsa-3072"),
    "intermediate-ca": _Profile(True, 0, True, False, True, False, "rsa-3072"),
    "code-signing": _Profile(False, None, False, True, False, False, "rsa-3072"),
    # UEFI 2.x requires RSA-2048 for PK/KEK/db signature lists.
    "secureboot-pk": _Profile(True, None, True, False, False, False, "rsa-2048"),
    "secureboot-kek": _Profile(True, None, True, False, False, False, "rsa-2048"),
    "secureboot-db": _Profile(False, None, False, True, False, False, "rsa-2048"),
    "kmod": _Profile(False, None, False, True, False, False, "rsa-3072"),
}


def default_algorithm(template: str) -> str:
    return _PROFILES[check_template(template)].default_algorithm


def is_ca(template: str) -> bool:
    return _PROFILES[check_template(template)].ca


def check_template(template: str) -> str:
    if template not in _PROFILES:
        raise UsageError(f"unknown X.509 template {template!r}; choose one of {', '.join(TEMPLATES)}", subject=template)
    return template


def parse_subject(subject: str) -> x509.Name:
    """An RFC 4514 string (``CN=Build,O=Example``) or the OpenSSL form balenaSign takes (``/CN=Build/O=Example``)."""
    if not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise UsageError(f"the subject must be 1 to {MAX_SUBJECT_CHARS} characters", subject="subject")
    text = subject
    if text.startswith("/"):
        parts = [p for p in text.split("/") if p]
        text = ",".join(p.replace(",", "\\,") for p in reversed(parts))
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise UsageError(f"subject {subject[:80]!r} is not a distinguished name: {exc}", subject="subject") from None
    if not name.rdns:
        raise UsageError("the subject is empty", subject="subject")
    return name


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def build_certificate(
    *,
    template: str,
    subject: x509.Name,
    public_key: PublicKey,
    issuer_key: PrivateKey,
    issuer_certificate: x509.Certificate | None,
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    """Issue a certificate; ``issuer_certificate`` is ``None`` for a self-signed one (then ``issuer_key`` is ours)."""
    profile = _PROFILES[check_template(template)]
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"days must be between 1 and {MAX_DAYS}", subject="days")
    if profile.needs_issuer and issuer_certificate is None:
        raise UsageError(f"a {template} certificate needs an issuer", subject=template)
    if profile.self_signed_only and issuer_certificate is not None:
        raise UsageError(f"a {template} certificate is self-signed; drop the issuer", subject=template)
    issuer_name = issuer_certificate.subject if issuer_certificate is not None else subject
    issuer_public = issuer_certificate.public_key() if issuer_certificate is not None else public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=profile.cert_sign,
                crl_sign=profile.cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if profile.code_signing:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key, _signature_hash(issuer_key))  # type: ignore[arg-type]
