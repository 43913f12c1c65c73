"""A small X.509 certificate authority for code signing: roots, intermediates and code-signing leaves.

Each issued identity is written as ``NAME.cert.pem`` (the chain, leaf first, root excluded unless NAME is a
root) and ``NAME.key.pem`` (PKCS#8, mode 0600), both atomically. ``--ca NAME`` reads such a pair back.

Example::

    root = create_root("/CN=ACME Root CA")
    ca = create_intermediate(root, "/CN=ACME Signing CA")
    leaf = issue(ca, "/CN=acme.org/O=ACME", code_signing=True)
    save(leaf, Path("acme"))
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from ._fs import atomic_write_bytes
from .errors import MalformedError, UsageError
from .keys import PrivateKey, generate_private_key, load_private_key_file, private_key_pem
from .ocm.x509chain import load_pem_certificates, name_from_dn

ROOT_DAYS = 3650
INTERMEDIATE_DAYS = 1825
LEAF_DAYS = 365
MAX_DAYS = 36500  # a century; anything longer is a typo
BACKDATE = timedelta(minutes=5)  # tolerate clock skew between the issuing and the verifying host
CERT_SUFFIX = ".cert.pem"
KEY_SUFFIX = ".key.pem"


@dataclass(frozen=True)
class CertifiedKey:
    """A private key and its certificate chain (leaf first)."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if not self.chain:
            raise UsageError("a certified key needs at least its own certificate")
        if self.chain[0].public_key() != self.key.public_key():
            raise UsageError("the private key does not belong to the first certificate of the chain")

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _validity(days: int, not_before: datetime | None, not_after: datetime | None) -> tuple[datetime, datetime]:
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"validity of {days} days is out of range (1..{MAX_DAYS})", subject="--days")
    start = not_before or datetime.now(UTC) - BACKDATE
    end = not_after or start + BACKDATE + timedelta(days=days)
    if end <= start:
        raise UsageError("a certificate must end after it begins", subject="not_after")
    return start, end


def _builder(
    subject: x509.Name, issuer: x509.Name, public: object, start: datetime, end: datetime
) -> x509.CertificateBuilder:
    if not len(subject):
        raise UsageError("the subject is empty", subject="--subject")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)  # positive, 127 random bits
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _ca_extensions(b: x509.CertificateBuilder, key: PrivateKey, path_length: int | None) -> x509.CertificateBuilder:
    return b.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )


def _with_key_ids(b: x509.CertificateBuilder, public: object, issuer_public: object) -> x509.CertificateBuilder:
    return b.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public),  # type: ignore[arg-type]
        critical=False,
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
        critical=False,
    )


def create_root(
    subject: str,
    *,
    key_type: str = "rsa-2048",
    days: int = ROOT_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """A self-signed root CA."""
    key = generate_private_key(key_type)
    name = name_from_dn(subject)
    start, end = _validity(days, not_before, not_after)
    b = _ca_extensions(_builder(name, name, key.public_key(), start, end), key, None)
    b = _with_key_ids(b, key.public_key(), key.public_key())
    return CertifiedKey((b.sign(key, _hash_for(key)),), key)


def create_intermediate(
    ca: CertifiedKey,
    subject: str,
    *,
    key_type: str = "rsa-2048",
    days: int = INTERMEDIATE_DAYS,
    path_length: int | None = 0,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """An intermediate CA signed by ``ca``; its chain file holds it and ``ca``'s chain (roots excluded)."""
    key = generate_private_key(key_type)
    start, end = _validity(days, not_before, not_after)
    b = _builder(name_from_dn(subject), ca.certificate.subject, key.public_key(), start, end)
    b = _with_key_ids(_ca_extensions(b, key, path_length), key.public_key(), ca.key.public_key())
    cert = b.sign(ca.key, _hash_for(ca.key))
    return CertifiedKey((cert, *_without_root(ca.chain)), key)


def issue(
    ca: CertifiedKey,
    subject: str,
    *,
    code_signing: bool = True,
    key_type: str = "rsa-2048",
    days: int = LEAF_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """A leaf certificate with the DigitalSignature key usage and, when ``code_signing``, the CodeSigning EKU."""
    key = generate_private_key(key_type)
    start, end = _validity(days, not_before, not_after)
    b = _builder(name_from_dn(subject), ca.certificate.subject, key.public_key(), start, end)
    b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if code_signing:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    b = _with_key_ids(b, key.public_key(), ca.key.public_key())
    cert = b.sign(ca.key, _hash_for(ca.key))
    return CertifiedKey((cert, *_without_root(ca.chain)), key)


def _without_root(chain: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
    return tuple(c for c in chain if c.issuer != c.subject)


def paths(prefix: Path) -> tuple[Path, Path]:
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + CERT_SUFFIX), prefix.with_name(prefix.name + KEY_SUFFIX)


def save(
    identity: CertifiedKey, prefix: Path, *, overwrite: bool = False, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Write ``PREFIX.cert.pem`` (chain, leaf first) and ``PREFIX.key.pem`` (0600) atomically."""
    cert_path, key_path = paths(prefix)
    if not overwrite:
        for p in (cert_path, key_path):
            if p.exists():
                raise UsageError(f"{p} exists; refusing to overwrite it", subject=str(p), hint="use --force")
    atomic_write_bytes(key_path, private_key_pem(identity.key, passphrase=passphrase), mode=0o600, overwrite=overwrite)
    atomic_write_bytes(cert_path, identity.chain_pem(), overwrite=overwrite)
    return cert_path, key_path


def load(prefix: Path, *, passphrase: bytes | None = None) -> CertifiedKey:
    """Read ``PREFIX.cert.pem`` and ``PREFIX.key.pem``."""
    cert_path, key_path = paths(prefix)
    try:
        data = cert_path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{cert_path} does not exist", subject=str(cert_path)) from None
    chain = load_pem_certificates(data, source=str(cert_path))
    key = load_private_key_file(key_path, passphrase=passphrase)
    try:
        return CertifiedKey(tuple(chain), key)
    except UsageError as exc:
        raise MalformedError(f"{cert_path}: {exc.message}", subject=str(cert_path)) from None


__all__ = ["CertifiedKey", "create_intermediate", "create_root", "issue", "load", "paths", "save"]
