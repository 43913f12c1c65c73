"""X.509 in one place: certificate profiles and issuance, distinguished names, and reading PEM certificates.

Issuance follows one rule wherever a certificate is made (``signery ca``, the signing service's x509 keys): a
random positive serial number of up to 159 bits (:func:`cryptography.x509.random_serial_number`), validity from 5
minutes before the moment of issue (clock skew between the issuing and the verifying host) to ``days`` after it,
digitalSignature always, keyCertSign and cRLSign exactly for CAs, subject and authority key identifiers, and
SHA-256 unless the issuer's key is Ed25519.

The profiles (templates) are roots and intermediates, a code-signing leaf, UEFI Secure Boot PK/KEK/db, and kmod. The
Secure Boot and kmod ones follow what balenaSign produces (``openssl req -x509``) and what the kernel's
``certs/default_x509.genkey`` asks for: digitalSignature + codeSigning for signing certificates, CA:TRUE for the
certificates that sign other signature lists.

Two ways of writing a distinguished name are read here. :func:`parse_subject` reads the subjects the signing service
stores (RFC 4514 as :mod:`cryptography` parses it, or OpenSSL's ``/CN=../O=..``). :func:`parse_dn` and
:func:`name_from_dn` read the looser grammar that OCM tooling and ``signery ca`` accept (attribute names in any case,
aliases such as ``issuer`` for CN, a bare common name); OCM matches signature issuers with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import MalformedError, UsageError
from .keys import PrivateKey, PublicKey

Template = Literal[
    "root-ca", "intermediate-ca", "code-signing", "secureboot-pk", "secureboot-kek", "secureboot-db", "kmod"
]
TEMPLATES: tuple[Template, ...] = get_args(Template)
MAX_DAYS = 36_525  # 100 years; certificates this long-lived already outlive any policy; longer is a typo
MAX_SUBJECT_CHARS = 1024  # a distinguished name is a few attributes, not a document
MAX_CERTIFICATES = 32  # certificates accepted from one PEM bundle
BACKDATE = timedelta(minutes=5)  # tolerate clock skew between the issuing and the verifying host


@dataclass(frozen=True)
class Profile:
    """What a certificate is for: a CA (which may sign certificates and CRLs) or a signing leaf.

    Attributes:
        path_length: for a CA, how many CAs may follow it (``None``: any number).
        code_signing: add the CodeSigning extended key usage.
        needs_issuer: refuse to make it self-signed.
        self_signed_only: refuse to make it under an issuer.
        default_algorithm: the key type the signing service generates for it unless told otherwise.
    """

    ca: bool
    path_length: int | None = None
    code_signing: bool = False
    needs_issuer: bool = False
    self_signed_only: bool = False
    default_algorithm: str = "rsa-3072"


PROFILES: dict[str, Profile] = {
    "root-ca": Profile(ca=True, self_signed_only=True),
    "intermediate-ca": Profile(ca=True, path_length=0, needs_issuer=True),
    "code-signing": Profile(ca=False, code_signing=True),
    # UEFI 2.x requires RSA-2048 for PK/KEK/db signature lists.
    "secureboot-pk": Profile(ca=True, default_algorithm="rsa-2048"),
    "secureboot-kek": Profile(ca=True, default_algorithm="rsa-2048"),
    "secureboot-db": Profile(ca=False, code_signing=True, default_algorithm="rsa-2048"),
    "kmod": Profile(ca=False, code_signing=True),
}


def check_template(template: str) -> str:
    if template not in PROFILES:
        raise UsageError(f"unknown X.509 template {template!r}; choose one of {', '.join(TEMPLATES)}", subject=template)
    return template


def default_algorithm(template: str) -> str:
    return PROFILES[check_template(template)].default_algorithm


def is_ca(template: str) -> bool:
    return PROFILES[check_template(template)].ca


def validity(
    days: int,
    *,
    now: datetime | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[datetime, datetime]:
    """``(not_before, not_after)``: from :data:`BACKDATE` before ``now`` to ``days`` after it, unless given."""
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"days must be between 1 and {MAX_DAYS}", subject="days")
    start = not_before if not_before is not None else (now or datetime.now(UTC)) - BACKDATE
    end = not_after if not_after is not None else start + BACKDATE + timedelta(days=days)
    if end <= start:
        raise UsageError("a certificate must end after it begins", subject="not_after")
    return start, end


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def build_certificate(
    *,
    template: str | Profile,
    subject: x509.Name,
    public_key: PublicKey,
    issuer_key: PrivateKey,
    issuer_certificate: x509.Certificate | None,
    days: int,
    now: datetime | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """Issue a certificate; ``issuer_certificate`` is ``None`` for a self-signed one (then ``issuer_key`` is ours).

    Raises:
        UsageError: an unknown template, an empty subject, days out of range, or an issuer the profile forbids
            (or lacks).
    """
    prof = template if isinstance(template, Profile) else PROFILES[check_template(template)]
    what = template if isinstance(template, str) else ("CA" if prof.ca else "leaf")
    if not subject.rdns:
        raise UsageError("the subject is empty", subject="subject")
    if prof.needs_issuer and issuer_certificate is None:
        raise UsageError(f"a {what} certificate needs an issuer", subject=what)
    if prof.self_signed_only and issuer_certificate is not None:
        raise UsageError(f"a {what} certificate is self-signed; drop the issuer", subject=what)
    start, end = validity(days, now=now, not_before=not_before, not_after=not_after)
    issuer_name = issuer_certificate.subject if issuer_certificate is not None else subject
    issuer_public = issuer_certificate.public_key() if issuer_certificate is not None else public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(ca=prof.ca, path_length=prof.path_length if prof.ca else None), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=prof.ca,
                crl_sign=prof.ca,
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
    if prof.code_signing:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key, _signature_hash(issuer_key))  # type: ignore[arg-type]


# ---- distinguished names ---------------------------------------------------------------------------------------


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


_ATTRS: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "COMMON-NAME": NameOID.COMMON_NAME,
    "ISSUER": NameOID.COMMON_NAME,  # ocm create rsakeypair spells CN as "issuer" too
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "PROVINCE": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "POSTALCODE": NameOID.POSTAL_CODE,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
}


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash."""
    parts, cur, esc = [], "", False
    for ch in text:
        if esc:
            cur += ch
            esc = False
        elif ch == "\\":
            cur += ch
            esc = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value.strip())


def parse_dn(text: str) -> list[tuple[x509.ObjectIdentifier, str]]:
    """Parse ``CN=a,O=b`` (RFC 2253/4514), ``/CN=a/O=b`` (OpenSSL) or a bare ``a`` (a common name)."""
    text = text.strip()
    if not text:
        raise MalformedError("empty distinguished name", subject="issuer")
    if "=" not in text:
        return [(NameOID.COMMON_NAME, text)]
    parts = (
        _split(text[1:], "/") if text.startswith("/") else [p for rdn in _split(text, ",") for p in _split(rdn, "+")]
    )
    out = []
    for part in parts:
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        oid = _ATTRS.get(key.strip().upper())
        if not eq or oid is None:
            raise MalformedError(f"cannot parse distinguished name {text!r} at {part!r}", subject="issuer")
        out.append((oid, _unescape(value)))
    return out


def name_from_dn(text: str) -> x509.Name:
    """An :class:`x509.Name` in the order written (OpenSSL order for ``/CN=..``; RFC 4514 is reversed)."""
    attrs = parse_dn(text)
    if not text.strip().startswith("/") and "=" in text:
        attrs = list(reversed(attrs))
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


# ---- PEM -------------------------------------------------------------------------------------------------------


def load_pem_certificates(data: bytes, *, source: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at most :data:`MAX_CERTIFICATES`)."""
    if data.count(b"-----BEGIN CERTIFICATE-----") > MAX_CERTIFICATES:
        raise MalformedError(f"{source}: more than {MAX_CERTIFICATES} certificates", subject=source)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise MalformedError(f"{source}: not PEM certificates", subject=source) from None
    return certs


__all__ = [
    "BACKDATE",
    "MAX_CERTIFICATES",
    "MAX_DAYS",
    "MAX_SUBJECT_CHARS",
    "PROFILES",
    "TEMPLATES",
    "Profile",
    "Template",
    "build_certificate",
    "check_template",
    "default_algorithm",
    "is_ca",
    "load_pem_certificates",
    "name_from_dn",
    "parse_dn",
    "parse_subject",
    "validity",
]
