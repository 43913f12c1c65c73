"""v4 signature packets: parse one, check its value against a key, and build one through an OpenPGP signer."""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from ..errors import MalformedError, UsageError
from ._keys import KeyPacket, check_created
from ._packets import (
    HASH_BY_NAME,
    HASH_IDS,
    MAX_SUBPACKETS,
    PK_DSA,
    PK_ECDSA,
    PK_ED25519,
    PK_EDDSA,
    PK_RSA,
    PK_RSA_E,
    PK_RSA_S,
    SIGNING_HASHES,
    STRONG_HASHES,
    TAG_SIGNATURE,
    Reader,
    encode_packet,
    mpi,
    pad,
    subpacket,
)

if TYPE_CHECKING:
    from ._sign import OpenPGPSigner

CRYPTO_HASH: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_512": hashes.SHA3_512,
}


@dataclass(frozen=True)
class SignaturePacket:
    """A parsed v4 signature packet; ``hashed_prefix`` is what the signature covers after the data."""

    version: int
    sig_type: int
    pk_algorithm: int
    hash_algorithm: int
    hashed_prefix: bytes
    left16: bytes
    fields: tuple[bytes, ...]
    created: datetime | None = None
    expires_after: timedelta | None = None  # signature expiration, relative to ``created``
    key_expires_after: timedelta | None = None  # key expiration, relative to the key's creation
    key_flags: int | None = None
    issuer_fingerprint: str | None = None
    issuer_key_id: str | None = None
    primary_uid: bool = False
    embedded: tuple[bytes, ...] = ()
    unknown_critical: tuple[int, ...] = ()

    @property
    def hash_name(self) -> str:
        return HASH_IDS.get(self.hash_algorithm, f"hash #{self.hash_algorithm}")

    @property
    def issuer(self) -> str | None:
        return self.issuer_fingerprint or self.issuer_key_id

    def trailer(self) -> bytes:
        return b"\x04\xff" + struct.pack(">I", len(self.hashed_prefix))

    def expired_at(self, when: datetime) -> bool:
        return (
            self.created is not None
            and self.expires_after is not None
            and self.expires_after > timedelta(0)
            and when >= self.created + self.expires_after
        )


def _subpackets(area: bytes, *, source: str) -> Iterator[tuple[int, bool, bytes]]:
    r = Reader(area, source=source, what="signature subpacket")
    count = 0
    while not r.done:
        count += 1
        if count > MAX_SUBPACKETS:
            raise MalformedError(f"{source}: too many signature subpackets", subject=source)
        first = r.u8()
        if first < 192:
            length = first
        elif first < 255:
            length = ((first - 192) << 8) + r.u8() + 192
        else:
            length = r.u32()
        if length == 0:
            raise MalformedError(f"{source}: empty signature subpacket", subject=source)
        kind = r.u8()
        yield kind & 0x7F, bool(kind & 0x80), r.take(length - 1)


_KNOWN_SUBPACKETS = frozenset({2, 3, 4, 5, 7, 9, 11, 12, 16, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33})


def parse_signature(body: bytes, *, source: str) -> SignaturePacket:
    """Parse a signature packet body. v3 and v6 signatures parse to a stub whose ``version`` says so."""
    r = Reader(body, source=source, what="signature packet")
    version = r.u8()
    if version != 4:
        return SignaturePacket(version, -1, 0, 0, b"", b"", ())
    sig_type, pk_alg, hash_alg = r.u8(), r.u8(), r.u8()
    hashed = r.take(r.u16())
    hashed_prefix = body[: r.pos]
    unhashed = r.take(r.u16())
    left16 = r.take(2)
    if pk_alg in (PK_RSA, PK_RSA_S, PK_RSA_E):
        fields: tuple[bytes, ...] = (r.mpi(),)
    elif pk_alg in (PK_EDDSA, PK_ECDSA, PK_DSA):
        fields = (r.mpi(), r.mpi())
    elif pk_alg == PK_ED25519:
        fields = (r.take(64),)
    else:
        fields = (r.rest(),)
    info: dict[str, object] = {}
    embedded: list[bytes] = []
    critical: list[int] = []
    for area_hashed, area in ((True, hashed), (False, unhashed)):
        for kind, crit, data in _subpackets(area, source=source):
            if area_hashed and crit and kind not in _KNOWN_SUBPACKETS:
                critical.append(kind)
            if kind == 2 and area_hashed and len(data) == 4:
                info["created"] = datetime.fromtimestamp(struct.unpack(">I", data)[0], UTC)
            elif kind == 3 and area_hashed and len(data) == 4:
                info["expires_after"] = timedelta(seconds=struct.unpack(">I", data)[0])
            elif kind == 9 and area_hashed and len(data) == 4:
                info["key_expires_after"] = timedelta(seconds=struct.unpack(">I", data)[0])
            elif kind == 27 and area_hashed and data:
                info["key_flags"] = data[0]
            elif kind == 25 and area_hashed and data:
                info["primary_uid"] = data[0] != 0
            elif kind == 16 and len(data) == 8:
                info.setdefault("issuer_key_id", data.hex())
            elif kind == 33 and len(data) == 21 and data[0] == 4:
                info.setdefault("issuer_fingerprint", data[1:].hex())
            elif kind == 32:
                embedded.append(data)
    return SignaturePacket(
        version=4,
        sig_type=sig_type,
        pk_algorithm=pk_alg,
        hash_algorithm=hash_alg,
        hashed_prefix=hashed_prefix,
        left16=left16,
        fields=fields,
        embedded=tuple(embedded),
        unknown_critical=tuple(critical),
        **info,  # type: ignore[arg-type]
    )


def check_signature_value(key: KeyPacket, sig: SignaturePacket, digest: bytes) -> bool:
    """Whether ``sig``'s value is a valid signature by ``key`` over ``digest`` (already hashed with trailer)."""
    pub = key.public_key
    name = STRONG_HASHES.get(sig.hash_algorithm)
    if pub is None or name is None or (sig.pk_algorithm != key.algorithm and not _rsa_pair(sig, key)):
        return False
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            value = pad(sig.fields[0], (pub.key_size + 7) // 8)
            pub.verify(value, digest, padding.PKCS1v15(), utils.Prehashed(CRYPTO_HASH[name]()))
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            if len(sig.fields) != 2:
                return False
            r, s = (int.from_bytes(f, "big") for f in sig.fields)
            der = utils.encode_dss_signature(r, s)
            pub.verify(der, digest, ec.ECDSA(utils.Prehashed(CRYPTO_HASH[name]())))
        elif sig.pk_algorithm == PK_EDDSA and len(sig.fields) == 2:
            pub.verify(pad(sig.fields[0], 32) + pad(sig.fields[1], 32), digest)
        else:
            pub.verify(sig.fields[0], digest)
    except (InvalidSignature, ValueError):
        return False
    return True


def _rsa_pair(sig: SignaturePacket, key: KeyPacket) -> bool:
    return sig.pk_algorithm in (PK_RSA, PK_RSA_S) and key.algorithm in (PK_RSA, PK_RSA_S)


def self_sig_digest(sig: SignaturePacket, *parts: bytes) -> bytes | None:
    """The digest a certification covers (``parts`` are the key and UID prefixes), if its left 16 bits match."""
    name = STRONG_HASHES.get(sig.hash_algorithm)
    if name is None:
        return None
    h = hashlib.new(name)
    for p in parts:
        h.update(p)
    h.update(sig.hashed_prefix)
    h.update(sig.trailer())
    digest = h.digest()
    return digest if hmac.compare_digest(digest[:2], sig.left16) else None


def uid_prefix(uid: bytes) -> bytes:
    return b"\xb4" + struct.pack(">I", len(uid)) + uid


def signature_value_fields(pubkey_algorithm: int, value: bytes) -> bytes:
    """Encode a raw signature value (see :meth:`OpenPGPSigner.sign_hash`) as the packet's fields."""
    if pubkey_algorithm in (PK_RSA, PK_RSA_S):
        return mpi(value)
    if pubkey_algorithm == PK_ED25519:
        if len(value) != 64:
            raise UsageError(f"an Ed25519 signature is 64 bytes, got {len(value)}")
        return value
    if pubkey_algorithm in (PK_EDDSA, PK_ECDSA):
        if pubkey_algorithm == PK_EDDSA and len(value) != 64:
            raise UsageError(f"an EdDSA signature is 64 bytes (r||s), got {len(value)}")
        if not value or len(value) % 2:
            raise UsageError(f"an ECDSA signature value is r||s of equal sizes, got {len(value)} bytes")
        half = len(value) // 2
        return mpi(value[:half]) + mpi(value[half:])
    raise UsageError(f"unsupported OpenPGP signing algorithm {pubkey_algorithm}")


def make_signature(
    signer: OpenPGPSigner,
    *,
    sig_type: int,
    created: datetime,
    data_hash: hashlib._Hash,
    extra_hashed: bytes = b"",
) -> bytes:
    """Build a framed v4 signature packet; ``data_hash`` has already hashed the signed data (it is consumed).

    The hashed area carries the creation time and the issuer fingerprint (plus ``extra_hashed``); the unhashed
    area carries the issuer key id for old verifiers.
    """
    hash_algorithm = data_hash.name
    hid = HASH_BY_NAME.get(hash_algorithm)
    if hid is None or hash_algorithm not in SIGNING_HASHES:
        raise UsageError(f"unsupported OpenPGP hash {hash_algorithm!r}; use sha256, sha384 or sha512")
    fpr = bytes.fromhex(signer.fingerprint)
    hashed = subpacket(2, struct.pack(">I", int(check_created(created).timestamp()))) + extra_hashed
    hashed += subpacket(33, b"\x04" + fpr)
    prefix = bytes([4, sig_type, signer.pubkey_algorithm, hid]) + struct.pack(">H", len(hashed)) + hashed
    data_hash.update(prefix)
    data_hash.update(b"\x04\xff" + struct.pack(">I", len(prefix)))
    digest = data_hash.digest()
    value = signer.sign_hash(digest, hash_algorithm=hash_algorithm)
    unhashed = subpacket(16, fpr[-8:])
    body = prefix + struct.pack(">H", len(unhashed)) + unhashed + digest[:2]
    body += signature_value_fields(signer.pubkey_algorithm, value)
    return encode_packet(TAG_SIGNATURE, body)
