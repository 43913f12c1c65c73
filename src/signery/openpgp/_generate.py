"""Certificates for plain keys and new OpenPGP keys: self-signed through a :class:`~signery.keys.Signer`."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..errors import UsageError
from ..keys import FileSigner, Signer
from ._armor import armor
from ._keys import KeyPacket, check_created
from ._packets import KEY_ALGORITHMS, TAG_PUBLIC_KEY, TAG_SECRET_KEY, TAG_USER_ID, PrivateKey, encode_packet, subpacket
from ._secret import secret_part
from ._sign import OpenPGPSigner
from ._signatures import make_signature, uid_prefix


def _certificate_packets(
    signer: Signer, *, uid: str, created: datetime, expires: datetime | None = None, flags: int = 0x03
) -> tuple[KeyPacket, bytes, bytes]:
    """(key, uid packet, self-signature packet) for a v4 primary key with key ``flags`` (certify and sign)."""
    if not uid or len(uid) > 1024 or any(ord(ch) < 0x20 for ch in uid):
        raise UsageError(f"invalid OpenPGP user ID {uid!r}", subject=uid)
    created = check_created(created)
    pgp = OpenPGPSigner(signer, created=created)
    uid_bytes = uid.encode()
    if expires is not None and check_created(expires) <= created:
        raise UsageError("a key must expire after it is created")
    lifetime = b"" if expires is None else subpacket(9, struct.pack(">I", int((expires - created).total_seconds())))
    extra = (
        subpacket(27, bytes([flags]))
        + lifetime
        + subpacket(11, bytes([9, 8, 7]))  # preferred ciphers: AES-256, AES-192, AES-128
        + subpacket(21, bytes([10, 9, 8]))  # preferred hashes: SHA-512, SHA-384, SHA-256
        + subpacket(22, bytes([2, 3, 1]))  # preferred compression: zlib, bzip2, zip
        + subpacket(30, b"\x01")  # features: modification detection
        + subpacket(25, b"\x01")  # primary user ID
    )
    selfsig = make_signature(
        pgp,
        sig_type=0x13,
        created=created,
        data_hash=hashlib.sha512(pgp.key.hash_prefix() + uid_prefix(uid_bytes)),
        extra_hashed=extra,
    )
    return pgp.key, encode_packet(TAG_USER_ID, uid_bytes), selfsig


def certificate_for(signer: Signer, *, uid: str, created: datetime, expires: datetime | None = None) -> str:
    """The armored certificate of ``signer``'s key as a v4 primary key that certifies and signs, self-signed by it.

    Works for any :class:`~signery.keys.Signer` with an RSA, Ed25519 or ECDSA key (a key file, the signing
    service, an HSM). The fingerprint depends only on (key, ``created``); RSA PKCS#1 v1.5 and Ed25519 being
    deterministic, so are the certificate's bytes. ``expires`` sets a key expiry.
    """
    key, uid_packet, selfsig = _certificate_packets(signer, uid=uid, created=created, expires=expires)
    return armor(encode_packet(TAG_PUBLIC_KEY, key.public_body) + uid_packet + selfsig, "PUBLIC KEY BLOCK")


def certificate_from_private_key(
    private_key: PrivateKey, *, uid: str, created: datetime, expires: datetime | None = None
) -> str:
    """:func:`certificate_for` a plain ``cryptography`` key (what the signing service holds)."""
    return certificate_for(FileSigner(private_key), uid=uid, created=created, expires=expires)


@dataclass(frozen=True)
class GeneratedKey:
    """A new OpenPGP key: armored secret key (give it mode 0600), armored public certificate, fingerprint."""

    fingerprint: str
    public_armored: str
    secret_armored: str = field(repr=False)

    @property
    def key_id(self) -> str:
        """The long key id, as gpg shows it: the low 64 bits of the fingerprint (its last 16 hex digits)."""
        return self.fingerprint[-16:]


def generate_key(uid: str, *, algorithm: str = "rsa-3072", passphrase: bytes | None = None) -> GeneratedKey:
    """Make a v4 key (primary key that certifies and signs) as gpg and sq import it.

    Args:
        uid: ``"Name <email>"``.
        algorithm: ``rsa-3072`` (default, as Mattermost's guide asks), ``rsa-4096`` or ``ed25519``.
        passphrase: protect the secret key with AES-256 and an iterated, salted SHA-256 S2K.
    """
    private_key: PrivateKey
    if algorithm == "ed25519":
        private_key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm in ("rsa-3072", "rsa-4096"):
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    else:
        raise UsageError(
            f"unknown OpenPGP key algorithm {algorithm!r}; choose one of {', '.join(KEY_ALGORITHMS)}",
            subject=algorithm,
        )
    if passphrase is not None and not passphrase:
        raise UsageError("an empty passphrase protects nothing; give none or a real one")
    created = datetime.now(UTC).replace(microsecond=0)
    key, uid_packet, selfsig = _certificate_packets(FileSigner(private_key), uid=uid, created=created)
    public = encode_packet(TAG_PUBLIC_KEY, key.public_body) + uid_packet + selfsig
    secret = encode_packet(TAG_SECRET_KEY, key.public_body + secret_part(private_key, passphrase))
    secret += uid_packet + selfsig
    return GeneratedKey(
        fingerprint=key.fingerprint,
        public_armored=armor(public, "PUBLIC KEY BLOCK"),
        secret_armored=armor(secret, "PRIVATE KEY BLOCK"),
    )
