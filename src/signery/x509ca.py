"""A small X.509 certificate authority for code signing (``signery ca``): roots, intermediates and leaves.

Certificates are made by :func:`signery.x509.build_certificate` with its profiles and its one issuance rule; this
module adds the CA's defaults, its chains, and its files.

Each issued identity is written as ``NAME.cert.pem`` (the chain, leaf first, root excluded unless NAME is a
root) and ``NAME.key.pem`` (PKCS#8, mode 0600), both atomically. ``--ca NAME`` reads such a pair back.

Example::

    root = create_root("/CN=ACME Root CA")
    ca = create_intermediate(root, "/CN=ACME Signing CA")
    leaf = issue(ca, "/CN=acme.org/O=ACME", code_signing=True)
    save(leaf, Path("acme"))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._fs import atomic_write_bytes
from .errors import MalformedError, UsageError
from .keys import PrivateKey, generate_private_key, load_private_key_file, private_key_pem
from .x509 import PROFILES, Profile, build_certificate, load_pem_certificates, name_from_dn, validity

ROOT_DAYS = 3650
INTERMEDIATE_DAYS = 1825
LEAF_DAYS = 365
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


def _issue(
    profile: Profile,
    subject: str,
    issuer: CertifiedKey | None,
    *,
    key_type: str,
    days: int,
    not_before: datetime | None,
    not_after: datetime | None,
) -> CertifiedKey:
    validity(days, not_before=not_before, not_after=not_after)  # refuse before spending time on a key
    key = generate_private_key(key_type)
    cert = build_certificate(
        template=profile,
        subject=name_from_dn(subject),
        public_key=key.public_key(),
        issuer_key=issuer.key if issuer is not None else key,
        issuer_certificate=issuer.certificate if issuer is not None else None,
        days=days,
        not_before=not_before,
        not_after=not_after,
    )
    return CertifiedKey((cert, *(_without_root(issuer.chain) if issuer is not None else ())), key)


def create_root(
    subject: str,
    *,
    key_type: str = "rsa-2048",
    days: int = ROOT_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """A self-signed root CA (the ``root-ca`` profile of :mod:`signery.x509`)."""
    return _issue(
        PROFILES["root-ca"], subject, None, key_type=key_type, days=days, not_before=not_before, not_after=not_after
    )


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
    profile = replace(PROFILES["intermediate-ca"], path_length=path_length)
    return _issue(profile, subject, ca, key_type=key_type, days=days, not_before=not_before, not_after=not_after)


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
    profile = replace(PROFILES["code-signing"], code_signing=code_signing)
    return _issue(profile, subject, ca, key_type=key_type, days=days, not_before=not_before, not_after=not_after)


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
