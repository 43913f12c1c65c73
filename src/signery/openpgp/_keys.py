"""v4 key packets: parse the public part (and where the secret part starts), or build one for a plain public key.

A v4 fingerprint is the SHA-1 of the public key packet, which holds the key's creation time: the same key material
created at another second is another OpenPGP key. That is why a plain :class:`~signery.keys.Signer` needs a
creation time (or a certificate) before it can sign OpenPGP.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import MalformedError, UsageError
from ._packets import (
    EC_CURVES,
    EC_OIDS,
    ED25519_OID,
    MIN_RSA_BITS,
    PK_DSA,
    PK_ECDH,
    PK_ECDSA,
    PK_ED448,
    PK_ED25519,
    PK_EDDSA,
    PK_ELGAMAL,
    PK_RSA,
    PK_RSA_E,
    PK_RSA_S,
    PK_X448,
    PK_X25519,
    PublicKey,
    Reader,
    mpi,
)


@dataclass(frozen=True)
class KeyPacket:
    """A v4 public key (or the public part of a secret key): what the fingerprint is computed over."""

    created: datetime
    algorithm: int
    public_body: bytes  # version octet .. end of public key material
    fingerprint: str
    public_key: PublicKey | None  # None for algorithms that cannot sign here (ECDH, ElGamal, DSA...)

    @property
    def key_id(self) -> str:
        return self.fingerprint[-16:]

    def hash_prefix(self) -> bytes:
        return b"\x99" + struct.pack(">H", len(self.public_body)) + self.public_body


def _public_key_from(algorithm: int, fields: list[bytes], *, source: str) -> PublicKey | None:
    if algorithm in (PK_RSA, PK_RSA_S):
        n, e = (int.from_bytes(f, "big") for f in fields)
        if n.bit_length() < MIN_RSA_BITS:
            return None  # weak keys exist in old certificates; they simply cannot sign for us
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise MalformedError(f"{source}: invalid RSA public key", subject=source) from None
    if algorithm == PK_EDDSA:
        oid, point = fields
        if oid != ED25519_OID:
            return None
        if len(point) != 33 or point[0] != 0x40:
            raise MalformedError(f"{source}: invalid EdDSA public key point", subject=source)
        return ed25519.Ed25519PublicKey.from_public_bytes(point[1:])
    if algorithm == PK_ED25519:
        return ed25519.Ed25519PublicKey.from_public_bytes(fields[0])
    if algorithm == PK_ECDSA:
        oid, point = fields
        if oid not in EC_CURVES:
            return None  # brainpool and other curves: gpg can make them, signery does not sign or verify them
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(EC_CURVES[oid][0](), point)
        except ValueError:
            raise MalformedError(f"{source}: invalid ECDSA public key point", subject=source) from None
    return None


def parse_key_packet(body: bytes, *, source: str) -> tuple[KeyPacket, int]:
    """Parse the public part of a key packet; return it and where the public part ends (secret part follows)."""
    r = Reader(body, source=source, what="key packet")
    version = r.u8()
    if version != 4:
        raise MalformedError(
            f"{source}: OpenPGP v{version} keys are not supported (only v4, as gpg and sq write by default)",
            subject=source,
        )
    created = r.u32()
    algorithm = r.u8()
    fields: list[bytes]
    if algorithm in (PK_RSA, PK_RSA_E, PK_RSA_S):
        fields = [r.mpi(), r.mpi()]
    elif algorithm == PK_DSA:
        fields = [r.mpi(), r.mpi(), r.mpi(), r.mpi()]
    elif algorithm == PK_ELGAMAL:
        fields = [r.mpi(), r.mpi(), r.mpi()]
    elif algorithm in (PK_ECDSA, PK_EDDSA, PK_ECDH):
        oid = r.take(r.u8())
        fields = [oid, r.mpi()]
        if algorithm == PK_ECDH:
            r.take(r.u8())  # KDF parameters
    elif algorithm in (PK_X25519, PK_ED25519):
        fields = [r.take(32)]
    elif algorithm == PK_X448:
        fields = [r.take(56)]
    elif algorithm == PK_ED448:
        fields = [r.take(57)]
    else:
        raise MalformedError(f"{source}: unknown public-key algorithm {algorithm}", subject=source)
    public_body = body[: r.pos]
    fpr = hashlib.sha1(b"\x99" + struct.pack(">H", len(public_body)) + public_body, usedforsecurity=False)
    key = KeyPacket(
        created=datetime.fromtimestamp(created, UTC),
        algorithm=algorithm,
        public_body=public_body,
        fingerprint=fpr.hexdigest(),
        public_key=_public_key_from(algorithm, fields, source=source),
    )
    return key, r.pos


def check_created(created: datetime) -> datetime:
    """A key or signature time as OpenPGP stores it: aware, UTC, whole seconds."""
    if created.tzinfo is None:
        raise UsageError("key creation time must be timezone-aware")
    return created.astimezone(UTC).replace(microsecond=0)


def _public_body(public_key: PublicKey, created: datetime) -> bytes:
    ts = struct.pack(">I", int(created.timestamp()))
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return b"\x04" + ts + bytes([PK_RSA]) + mpi(nums.n) + mpi(nums.e)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        point = b"\x40" + public_key.public_bytes_raw()
        return b"\x04" + ts + bytes([PK_EDDSA, len(ED25519_OID)]) + ED25519_OID + mpi(point)
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in EC_OIDS:
        oid = EC_OIDS[public_key.curve.name]
        size = EC_CURVES[oid][1]
        xy = public_key.public_numbers()
        point = b"\x04" + xy.x.to_bytes(size, "big") + xy.y.to_bytes(size, "big")
        return b"\x04" + ts + bytes([PK_ECDSA, len(oid)]) + oid + mpi(point)
    raise UsageError(
        f"unsupported key type {type(public_key).__name__} for OpenPGP (use RSA, Ed25519 or ECDSA P-256/384/521)"
    )


def key_packet(public_key: PublicKey, created: datetime) -> KeyPacket:
    """The v4 key packet of a plain public key created at ``created`` (RSA, Ed25519 as EdDSA, ECDSA)."""
    key, _ = parse_key_packet(_public_body(public_key, check_created(created)), source="public key")
    return key


def same_key(a: PublicKey, b: object) -> bool:
    """Whether ``a`` and ``b`` are the same public key."""
    if isinstance(a, ed25519.Ed25519PublicKey):
        return isinstance(b, ed25519.Ed25519PublicKey) and a.public_bytes_raw() == b.public_bytes_raw()
    if isinstance(a, rsa.RSAPublicKey):
        return isinstance(b, rsa.RSAPublicKey) and a.public_numbers() == b.public_numbers()
    return isinstance(b, ec.EllipticCurvePublicKey) and a.public_numbers() == b.public_numbers()
