"""OpenPGP keys, certificates and v4 signature packets, as gpg and sq write them.

This module parses and writes exactly the part of OpenPGP (RFC 4880 / RFC 9580 v4) that detached package
signatures need: ASCII armor, packet framing, v4 public and secret keys (RSA, EdDSA/Ed25519), user IDs,
self-signatures and subkey bindings (checked cryptographically), passphrase-protected secret keys as
``gpg --export-secret-keys`` writes them, and v4 signature packets. Everything else is refused with a
:class:`~signery.errors.MalformedError` naming the input.

Why hand-written: a package signature must be checked while the file is *streamed* (pysequoia reads the whole
file into memory), and a signing service must sign a digest with a key it holds as a plain ``cryptography``
object. The code is tested differentially against ``gpg`` and ``sq`` (tests/interop).

Example::

    key = generate_key("Alice <alice@example.org>", algorithm="ed25519")
    signer = load_signer(key.secret_armored.encode(), source="alice.private.asc")
    info = inspect_certificate(key.public_armored.encode(), source="alice.public.asc")
    assert info.fingerprint == signer.fingerprint
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from .errors import MalformedError, UsageError

MAX_KEY_BYTES = 1 << 20  # a certificate with many UIDs and subkeys is a few hundred KiB; refuse anything larger
MAX_PACKETS = 5_000  # bounds the work one hostile certificate or signature file can cause
MAX_SUBPACKETS = 256  # gpg writes fewer than 20; more is a resource attack
MAX_S2K_COUNT = 65_011_712  # the largest count the one-octet encoding can express (RFC 4880 3.7.1.3)
MIN_RSA_BITS = 2048  # below this RSA is factorable by well-funded attackers
CLOCK_SKEW = timedelta(minutes=10)  # a signature "from the future" within this is a clock difference, not an attack

# RFC 4880 / 9580 algorithm ids.
PK_RSA, PK_RSA_E, PK_RSA_S = 1, 2, 3
PK_ELGAMAL, PK_DSA, PK_ECDH, PK_ECDSA, PK_EDDSA = 16, 17, 18, 19, 22
PK_X25519, PK_X448, PK_ED25519, PK_ED448 = 25, 26, 27, 28
PK_NAMES = {
    1: "RSA",
    2: "RSA",
    3: "RSA",
    16: "ElGamal",
    17: "DSA",
    18: "ECDH",
    19: "ECDSA",
    22: "EdDSA",
    25: "X25519",
    26: "X448",
    27: "Ed25519",
    28: "Ed448",
}
HASH_IDS: dict[int, str] = {
    1: "MD5",
    2: "SHA1",
    3: "RIPEMD160",
    8: "SHA256",
    9: "SHA384",
    10: "SHA512",
    11: "SHA224",
    12: "SHA3-256",
    14: "SHA3-512",
}
# Hashes accepted in signatures and self-signatures: SHA-256 or stronger. SHA-1 is broken for signatures
# (SHAttered, Shambles); MD5 and RIPEMD-160 are worse or weaker; SHA-224 is below the bar the issue sets.
STRONG_HASHES: dict[int, str] = {8: "sha256", 9: "sha384", 10: "sha512", 12: "sha3_256", 14: "sha3_512"}
HASH_BY_NAME: dict[str, int] = {"sha256": 8, "sha384": 9, "sha512": 10, "sha3_256": 12, "sha3_512": 14}
_CRYPTO_HASH: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_512": hashes.SHA3_512,
}
_CIPHERS: dict[int, int] = {7: 16, 8: 24, 9: 32}  # AES-128/192/256: key sizes. CAST5/3DES/IDEA keys are refused.

ED25519_OID = bytes.fromhex("2b06010401da470f01")  # 1.3.6.1.4.1.11591.15.1, EdDSA legacy over Ed25519

# Signature types.
SIG_BINARY, SIG_TEXT = 0x00, 0x01
SIG_CERT_TYPES = (0x10, 0x11, 0x12, 0x13)
SIG_SUBKEY_BINDING, SIG_PRIMARY_BINDING, SIG_DIRECT = 0x18, 0x19, 0x1F
SIG_KEY_REVOCATION, SIG_SUBKEY_REVOCATION, SIG_CERT_REVOCATION = 0x20, 0x28, 0x30

# Key flags (first octet of subpacket 27).
FLAG_CERTIFY, FLAG_SIGN = 0x01, 0x02

# Packet tags.
TAG_SIGNATURE, TAG_SECRET_KEY, TAG_PUBLIC_KEY, TAG_SECRET_SUBKEY = 2, 5, 6, 7
TAG_MARKER, TAG_TRUST, TAG_USER_ID, TAG_PUBLIC_SUBKEY, TAG_USER_ATTRIBUTE = 10, 12, 13, 14, 17

ArmorKind = Literal["PUBLIC KEY BLOCK", "PRIVATE KEY BLOCK", "SIGNATURE", "MESSAGE"]
KeyAlgorithm = Literal["rsa-3072", "rsa-4096", "ed25519"]
KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = ("rsa-3072", "rsa-4096", "ed25519")

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# --------------------------------------------------------------------------------------------------------------
# Armor


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


_ARMOR_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,0-9/]+)-----[ \t]*$")


def is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN PGP ")


def dearmor(data: bytes, *, source: str) -> tuple[bytes, list[str]]:
    """Decode every armor block in ``data``; return the concatenated binary and the block kinds.

    The CRC-24 line, when present, must match: a damaged copy is refused rather than half-parsed.
    """
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    out = bytearray()
    kinds: list[str] = []
    i = 0
    while i < len(lines):
        m = _ARMOR_BEGIN.match(lines[i].strip())
        if not m:
            i += 1
            continue
        kind = m.group(1).decode()
        i += 1
        # Armor headers ("Version: ...", "Comment: ...") are not authenticated; they end at the first blank line.
        j = i
        while j < len(lines) and lines[j].strip() and b":" in lines[j] and not lines[j].startswith(b"="):
            j += 1
        if j < len(lines) and not lines[j].strip():
            i = j + 1
        body: list[bytes] = []
        crc: bytes | None = None
        while i < len(lines) and not lines[i].startswith(b"-----END PGP "):
            line = lines[i].strip()
            if line.startswith(b"=") and len(line) == 5:
                crc = line[1:]
            elif line:
                body.append(line)
            i += 1
        if i >= len(lines):
            raise MalformedError(f"{source}: armor block {kind} has no END line", subject=source)
        try:
            raw = base64.b64decode(b"".join(body), validate=True)
        except ValueError:
            raise MalformedError(f"{source}: armor block {kind} is not valid base64", subject=source) from None
        if crc is not None:
            try:
                want = int.from_bytes(base64.b64decode(crc, validate=True), "big")
            except ValueError:
                raise MalformedError(f"{source}: armor checksum is not base64", subject=source) from None
            if want != _crc24(raw):
                raise MalformedError(f"{source}: armor checksum mismatch (damaged copy?)", subject=source)
        out += raw
        kinds.append(kind)
        i += 1
    if not kinds:
        raise MalformedError(f"{source}: no OpenPGP armor block found", subject=source)
    return bytes(out), kinds


def armor(data: bytes, kind: ArmorKind) -> str:
    """ASCII-armor ``data`` as gpg does: 64-column base64, CRC-24 line, no unauthenticated headers."""
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    return "\n".join([f"-----BEGIN PGP {kind}-----", "", *lines, f"={crc}", f"-----END PGP {kind}-----", ""])


def _binary(data: bytes, *, source: str) -> bytes:
    return dearmor(data, source=source)[0] if is_armored(data) else data


# --------------------------------------------------------------------------------------------------------------
# Packets


@dataclass(frozen=True)
class Packet:
    tag: int
    body: bytes


def iter_packets(data: bytes, *, source: str, max_packets: int = MAX_PACKETS) -> Iterator[Packet]:
    """Split binary OpenPGP into packets (old and new framing). Partial lengths are refused: keys and
    signatures never use them, and they only serve streamed data packets we do not read."""
    pos, n, count = 0, len(data), 0
    while pos < n:
        count += 1
        if count > max_packets:
            raise MalformedError(f"{source}: more than {max_packets} OpenPGP packets", subject=source)
        ctb = data[pos]
        pos += 1
        if not ctb & 0x80:
            raise MalformedError(f"{source}: not OpenPGP data (bad packet header at byte {pos - 1})", subject=source)
        if ctb & 0x40:
            tag = ctb & 0x3F
            if pos >= n:
                raise MalformedError(f"{source}: truncated packet header", subject=source)
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                if pos + 2 > n:
                    raise MalformedError(f"{source}: truncated packet header", subject=source)
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                if pos + 5 > n:
                    raise MalformedError(f"{source}: truncated packet header", subject=source)
                length, pos = struct.unpack(">I", data[pos + 1 : pos + 5])[0], pos + 5
            else:
                raise MalformedError(f"{source}: partial-length packets are not allowed here", subject=source)
        else:
            tag, ltype = (ctb >> 2) & 0x0F, ctb & 0x03
            if ltype == 3:
                length = n - pos
            else:
                size = 1 << ltype
                if pos + size > n:
                    raise MalformedError(f"{source}: truncated packet header", subject=source)
                length, pos = int.from_bytes(data[pos : pos + size], "big"), pos + size
        if pos + length > n:
            raise MalformedError(f"{source}: truncated OpenPGP packet (tag {tag})", subject=source)
        yield Packet(tag, data[pos : pos + length])
        pos += length


def encode_packet(tag: int, body: bytes) -> bytes:
    """New-format packet framing, as gpg and sq write."""
    n = len(body)
    if n < 192:
        head = bytes([n])
    elif n < 8384:
        n -= 192
        head = bytes([(n >> 8) + 192, n & 0xFF])
    else:
        head = b"\xff" + struct.pack(">I", n)
    return bytes([0xC0 | tag]) + head + body


def mpi(value: int | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    raw = raw.lstrip(b"\x00")
    return struct.pack(">H", int.from_bytes(raw, "big").bit_length()) + raw


class _Reader:
    """Bounded reads from one packet body; any overrun is a ``malformed`` error naming the source."""

    def __init__(self, data: bytes, *, source: str, what: str) -> None:
        self.data, self.pos, self.source, self.what = data, 0, source, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedError(f"{self.source}: truncated {self.what}", subject=self.source)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def mpi(self) -> bytes:
        bits = self.u16()
        return self.take((bits + 7) // 8)

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


# --------------------------------------------------------------------------------------------------------------
# Keys


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
    return None


def parse_key_packet(body: bytes, *, source: str) -> tuple[KeyPacket, int]:
    """Parse the public part of a key packet; return it and where the public part ends (secret part follows)."""
    r = _Reader(body, source=source, what="key packet")
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


# --------------------------------------------------------------------------------------------------------------
# Signature packets


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
    r = _Reader(area, source=source, what="signature subpacket")
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
    r = _Reader(body, source=source, what="signature packet")
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


def _pad(raw: bytes, size: int) -> bytes:
    return raw.rjust(size, b"\x00") if len(raw) <= size else raw


def check_signature_value(key: KeyPacket, sig: SignaturePacket, digest: bytes) -> bool:
    """Whether ``sig``'s value is a valid signature by ``key`` over ``digest`` (already hashed with trailer)."""
    pub = key.public_key
    name = STRONG_HASHES.get(sig.hash_algorithm)
    if pub is None or name is None or (sig.pk_algorithm != key.algorithm and not _rsa_pair(sig, key)):
        return False
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            value = _pad(sig.fields[0], (pub.key_size + 7) // 8)
            pub.verify(value, digest, padding.PKCS1v15(), utils.Prehashed(_CRYPTO_HASH[name]()))
        elif sig.pk_algorithm == PK_EDDSA and len(sig.fields) == 2:
            pub.verify(_pad(sig.fields[0], 32) + _pad(sig.fields[1], 32), digest)
        else:
            pub.verify(sig.fields[0], digest)
    except (InvalidSignature, ValueError):
        return False
    return True


def _rsa_pair(sig: SignaturePacket, key: KeyPacket) -> bool:
    return sig.pk_algorithm in (PK_RSA, PK_RSA_S) and key.algorithm in (PK_RSA, PK_RSA_S)


def _self_sig_digest(sig: SignaturePacket, *parts: bytes) -> bytes | None:
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


def _uid_prefix(uid: bytes) -> bytes:
    return b"\xb4" + struct.pack(">I", len(uid)) + uid


# --------------------------------------------------------------------------------------------------------------
# Certificates


@dataclass
class Component:
    """A primary key or subkey with what its valid self-signatures say about it."""

    key: KeyPacket
    flags: int | None = None
    key_expires_after: timedelta | None = None
    revoked: bool = False
    bound: bool = False  # a valid binding (subkeys) or self-signature (primary) was found
    secret_body: bytes | None = None  # secret part of a secret-key packet, still encrypted
    binding_time: datetime | None = None

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    @property
    def expires(self) -> datetime | None:
        if self.key_expires_after is None or self.key_expires_after <= timedelta(0):
            return None
        return self.key.created + self.key_expires_after

    @property
    def can_sign(self) -> bool:
        return self.flags is not None and bool(self.flags & FLAG_SIGN) and self.key.public_key is not None


@dataclass
class Certificate:
    """A validated v4 certificate: only cryptographically valid self-signatures are taken into account."""

    primary: Component
    uids: list[str]
    primary_uid: str | None
    subkeys: list[Component]
    public_packets: bytes
    was_secret: bool
    source: str
    components: dict[str, Component] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.primary.fingerprint

    def find(self, issuer: str) -> Component | None:
        """The component whose fingerprint (40 hex) or key id (16 hex) is ``issuer``."""
        issuer = issuer.lower()
        for c in (self.primary, *self.subkeys):
            if c.fingerprint == issuer or c.key.key_id == issuer:
                return c
        return None


def _newest(sigs: list[SignaturePacket]) -> SignaturePacket | None:
    return max(sigs, key=lambda s: s.created or datetime.min.replace(tzinfo=UTC), default=None)


def _valid_self_sig(
    sig: SignaturePacket, signer: KeyPacket, types: tuple[int, ...], now: datetime, *parts: bytes
) -> bool:
    if sig.version != 4 or sig.sig_type not in types or sig.created is None or sig.unknown_critical:
        return False
    if sig.issuer is not None and sig.issuer not in (signer.fingerprint, signer.key_id):
        return False
    if sig.created > now + CLOCK_SKEW or sig.expired_at(now):
        return False
    digest = _self_sig_digest(sig, *parts)
    return digest is not None and check_signature_value(signer, sig, digest)


def parse_certificate(data: bytes, *, source: str, now: datetime | None = None) -> Certificate:
    """Parse and validate one OpenPGP certificate or secret key (binary or armored).

    Raises:
        MalformedError: not OpenPGP, not exactly one certificate, a v6 key, or no valid self-signature.
    """
    now = now or datetime.now(UTC)
    if len(data) > MAX_KEY_BYTES:
        raise MalformedError(f"{source} is too large to be an OpenPGP key", subject=source)
    packets = list(iter_packets(_binary(data, source=source), source=source))
    packets = [p for p in packets if p.tag not in (TAG_TRUST, TAG_MARKER)]
    if not packets or packets[0].tag not in (TAG_PUBLIC_KEY, TAG_SECRET_KEY):
        raise MalformedError(f"{source} is not an OpenPGP certificate or key", subject=source)
    primaries = sum(1 for p in packets if p.tag in (TAG_PUBLIC_KEY, TAG_SECRET_KEY))
    if primaries > 1:
        raise MalformedError(f"{source} holds {primaries} certificates; give one certificate per file", subject=source)
    was_secret = packets[0].tag == TAG_SECRET_KEY
    pkey, end = parse_key_packet(packets[0].body, source=source)
    primary = Component(pkey, secret_body=packets[0].body[end:] if was_secret else None)
    pprefix = pkey.hash_prefix()

    # Group packets: direct signatures, then (uid, sigs)*, then (subkey, sigs)*.
    direct: list[SignaturePacket] = []
    uid_groups: list[tuple[bytes, list[SignaturePacket]]] = []
    sub_groups: list[tuple[Component, list[SignaturePacket]]] = []
    public_out = bytearray(encode_packet(TAG_PUBLIC_KEY, pkey.public_body))
    current: list[SignaturePacket] | None = direct
    for p in packets[1:]:
        if p.tag == TAG_SIGNATURE:
            public_out += encode_packet(p.tag, p.body)
            if current is not None:
                current.append(parse_signature(p.body, source=source))
        elif p.tag == TAG_USER_ID:
            public_out += encode_packet(p.tag, p.body)
            uid_groups.append((p.body, []))
            current = uid_groups[-1][1]
        elif p.tag in (TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY):
            sk, send = parse_key_packet(p.body, source=source)
            public_out += encode_packet(TAG_PUBLIC_SUBKEY, sk.public_body)
            comp = Component(sk, secret_body=p.body[send:] if p.tag == TAG_SECRET_SUBKEY else None)
            sub_groups.append((comp, []))
            current = sub_groups[-1][1]
        elif p.tag == TAG_USER_ATTRIBUTE:
            current = None  # photo IDs: kept out of the stored certificate, never needed to verify
        else:
            raise MalformedError(f"{source}: unexpected packet (tag {p.tag}) in a certificate", subject=source)

    # Primary key revocation and direct-key signatures.
    for sig in direct:
        if _valid_self_sig(sig, pkey, (SIG_KEY_REVOCATION,), now, pprefix):
            primary.revoked = True
    direct_ok = [s for s in direct if _valid_self_sig(s, pkey, (SIG_DIRECT,), now, pprefix)]

    uids: list[str] = []
    uid_bindings: list[tuple[str, SignaturePacket]] = []
    for raw_uid, sigs in uid_groups:
        parts = (pprefix, _uid_prefix(raw_uid))
        if any(_valid_self_sig(s, pkey, (SIG_CERT_REVOCATION,), now, *parts) for s in sigs):
            continue
        binding = _newest([s for s in sigs if _valid_self_sig(s, pkey, SIG_CERT_TYPES, now, *parts)])
        if binding is None:
            continue
        text = raw_uid.decode("utf-8", errors="replace")
        uids.append(text)
        uid_bindings.append((text, binding))
    primary_binding = None
    if uid_bindings:
        primary_binding = max(
            uid_bindings,
            key=lambda ub: (ub[1].primary_uid, ub[1].created or datetime.min.replace(tzinfo=UTC)),
        )
    self_sig = primary_binding[1] if primary_binding else _newest(direct_ok)
    if self_sig is None:
        raise MalformedError(
            f"{source}: no valid self-signature (SHA-1 or weaker self-signatures are refused)", subject=source
        )
    primary.bound = True
    primary.flags = self_sig.key_flags
    primary.key_expires_after = self_sig.key_expires_after
    newest_direct = _newest(direct_ok)
    if primary.flags is None and newest_direct is not None:
        primary.flags = newest_direct.key_flags
    if primary.key_expires_after is None and newest_direct is not None:
        primary.key_expires_after = newest_direct.key_expires_after

    subkeys: list[Component] = []
    for comp, sigs in sub_groups:
        parts = (pprefix, comp.key.hash_prefix())
        if any(_valid_self_sig(s, pkey, (SIG_SUBKEY_REVOCATION,), now, *parts) for s in sigs):
            comp.revoked = True
        bindings = [s for s in sigs if _valid_self_sig(s, pkey, (SIG_SUBKEY_BINDING,), now, *parts)]
        binding = _newest(bindings)
        if binding is None:
            continue
        comp.bound = True
        comp.flags = binding.key_flags
        comp.key_expires_after = binding.key_expires_after
        comp.binding_time = binding.created
        if comp.flags is not None and comp.flags & FLAG_SIGN:
            # A signing subkey must sign back (0x19), or anyone could bind someone else's key as theirs.
            backs = [parse_signature(e, source=source) for e in binding.embedded]
            if not any(_valid_self_sig(b, comp.key, (SIG_PRIMARY_BINDING,), now, *parts) for b in backs):
                comp.flags &= ~FLAG_SIGN
        subkeys.append(comp)

    cert = Certificate(
        primary=primary,
        uids=uids,
        primary_uid=primary_binding[0] if primary_binding else None,
        subkeys=subkeys,
        public_packets=bytes(public_out),
        was_secret=was_secret,
        source=source,
    )
    return cert


def _uid_name(uid: str | None) -> str | None:
    if not uid:
        return None
    name = re.sub(r"\s*<[^>]*>\s*$", "", uid)
    name = re.sub(r"\s*\([^)]*\)\s*$", "", name).strip()
    return name or None


@dataclass(frozen=True)
class CertificateInfo:
    """What the trust store records about an OpenPGP certificate."""

    fingerprint: str
    uids: list[str]
    primary_name: str | None
    expires: datetime | None
    revoked: bool
    signing_subkeys: list[str]
    public_armored: str
    was_secret: bool


def inspect_certificate(data: bytes, *, source: str) -> CertificateInfo:
    """Read one OpenPGP certificate (or secret key, of which only the public part is kept).

    Raises:
        MalformedError: not OpenPGP, several certificates, or no valid self-signature.
    """
    cert = parse_certificate(data, source=source)
    return CertificateInfo(
        fingerprint=cert.fingerprint,
        uids=list(cert.uids),
        primary_name=_uid_name(cert.primary_uid),
        expires=cert.primary.expires,
        revoked=cert.primary.revoked,
        signing_subkeys=[c.fingerprint for c in cert.subkeys if c.can_sign],
        public_armored=armor(cert.public_packets, "PUBLIC KEY BLOCK"),
        was_secret=cert.was_secret,
    )


# --------------------------------------------------------------------------------------------------------------
# Secret keys


def _s2k_key(spec: _Reader, passphrase: bytes, key_len: int, *, source: str) -> bytes:
    kind = spec.u8()
    hash_id = spec.u8()
    hname = {2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}.get(hash_id)
    if hname is None:
        raise MalformedError(f"{source}: unsupported S2K hash {HASH_IDS.get(hash_id, hash_id)}", subject=source)
    salt = b""
    count = 0
    if kind == 0:
        pass
    elif kind == 1:
        salt = spec.take(8)
    elif kind == 3:
        salt = spec.take(8)
        c = spec.u8()
        count = min((16 + (c & 15)) << ((c >> 4) + 6), MAX_S2K_COUNT)
    else:
        raise MalformedError(f"{source}: unsupported S2K specifier {kind}", subject=source)
    material = salt + passphrase
    out = b""
    preload = 0
    while len(out) < key_len:
        h = hashlib.new(hname)
        h.update(b"\x00" * preload)
        if kind == 3 and material:
            total = max(count, len(material))
            block = material * max(1, 65536 // len(material))
            while total >= len(block):
                h.update(block)
                total -= len(block)
            h.update(block[:total])
        else:
            h.update(material)
        out += h.digest()
        preload += 1
    return out[:key_len]


def _decrypt_secret(secret: bytes, passphrase: bytes | None, *, source: str) -> bytes:
    """Return the plaintext secret MPIs of a v4 secret-key packet (after the public part)."""
    r = _Reader(secret, source=source, what="secret key")
    usage = r.u8()
    if usage == 0:
        plain = r.rest()
        body, check = plain[:-2], plain[-2:]
        if len(plain) < 2 or sum(body) & 0xFFFF != int.from_bytes(check, "big"):
            raise MalformedError(f"{source}: secret key checksum mismatch (damaged key)", subject=source)
        return body
    if usage not in (254, 255):
        raise MalformedError(
            f"{source}: secret key protection {usage} is not supported (expected gpg's or sq's S2K)", subject=source
        )
    cipher = r.u8()
    if r.pos < len(r.data) and r.data[r.pos] == 101:  # GNU extension S2K 101: no secret here
        raise UsageError(
            f"{source}: this secret key is a stub (gnu-dummy): its secret part lives elsewhere (a smartcard?)",
            subject=source,
        )
    if cipher not in _CIPHERS:
        raise MalformedError(f"{source}: secret key cipher {cipher} is not supported (use AES)", subject=source)
    if passphrase is None:
        raise UsageError(f"{source} is passphrase-protected; give its passphrase", subject=source)
    key = _s2k_key(r, passphrase, _CIPHERS[cipher], source=source)
    iv = r.take(16)
    decryptor = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    plain = decryptor.update(r.rest()) + decryptor.finalize()
    if usage == 254:
        body, check = plain[:-20], plain[-20:]
        ok = len(plain) >= 20 and hmac.compare_digest(hashlib.sha1(body, usedforsecurity=False).digest(), check)
    else:
        body, check = plain[:-2], plain[-2:]
        ok = len(plain) >= 2 and sum(body) & 0xFFFF == int.from_bytes(check, "big")
    if not ok:
        raise UsageError(f"{source}: wrong passphrase", subject=source)
    return body


def _private_key(key: KeyPacket, plain: bytes, *, source: str) -> PrivateKey:
    pub = key.public_key
    r = _Reader(plain, source=source, what="secret key material")
    if isinstance(pub, rsa.RSAPublicKey):
        d, p, q = (int.from_bytes(r.mpi(), "big") for _ in range(3))
        nums = pub.public_numbers()
        if p * q != nums.n:
            raise MalformedError(f"{source}: RSA secret key does not match its public key", subject=source)
        return rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), nums
        ).private_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        seed = r.take(32) if key.algorithm == PK_ED25519 else _pad(r.mpi(), 32)
        priv = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        if priv.public_key().public_bytes_raw() != pub.public_bytes_raw():
            raise MalformedError(f"{source}: Ed25519 secret key does not match its public key", subject=source)
        return priv
    raise MalformedError(f"{source}: key algorithm {PK_NAMES.get(key.algorithm)} cannot sign here", subject=source)


# --------------------------------------------------------------------------------------------------------------
# Signers


@runtime_checkable
class OpenPGPSigner(Protocol):
    """Anything that can make an OpenPGP v4 signature value over a digest: a local key, a remote service.

    ``sign_hash`` returns the raw signature value: RSA, the PKCS#1 v1.5 signature over the prehashed digest;
    EdDSA, ``r || s`` (64 bytes), Ed25519 over the digest bytes as OpenPGP v4 EdDSALegacy does.
    """

    fingerprint: str
    pubkey_algorithm: int

    def sign_hash(self, digest: bytes, *, hash_algorithm: str) -> bytes: ...


class LocalSigner:
    """An :class:`OpenPGPSigner` over a private key held in this process."""

    def __init__(self, private_key: PrivateKey, *, key: KeyPacket) -> None:
        self._key = private_key
        self.fingerprint: str = key.fingerprint
        self.pubkey_algorithm: int = PK_RSA if isinstance(private_key, rsa.RSAPrivateKey) else PK_EDDSA
        self.created = key.created

    def __repr__(self) -> str:  # never show key material
        return f"LocalSigner(fingerprint={self.fingerprint!r}, algorithm={PK_NAMES[self.pubkey_algorithm]!r})"

    def sign_hash(self, digest: bytes, *, hash_algorithm: str) -> bytes:
        h = _CRYPTO_HASH.get(hash_algorithm)
        if h is None:
            raise UsageError(f"unsupported OpenPGP hash {hash_algorithm!r}; use sha256, sha384 or sha512")
        if len(digest) != h().digest_size:
            raise UsageError(f"a {hash_algorithm} digest is {h().digest_size} bytes, got {len(digest)}")
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(h()))
        return self._key.sign(digest)


def load_signer(data: bytes, *, passphrase: bytes | None = None, source: str) -> OpenPGPSigner:
    """Load a secret key (from ``gpg --export-secret-keys``, ``sq key generate`` or :func:`generate_key`).

    The newest valid signing subkey with secret material signs, as gpg does; else the primary key, if it may
    sign. Raises ``malformed`` for a non-key or a key that cannot sign, and a usage error for a missing or wrong
    passphrase.
    """
    cert = parse_certificate(data, source=source)
    if not cert.was_secret:
        raise UsageError(f"{source} is a public certificate; signing needs the secret key", subject=source)
    if cert.primary.revoked:
        raise UsageError(f"{source}: key {cert.fingerprint} is revoked", subject=source)
    now = datetime.now(UTC)
    if cert.primary.expires is not None and cert.primary.expires <= now:
        raise UsageError(f"{source}: key {cert.fingerprint} expired on {cert.primary.expires:%Y-%m-%d}", subject=source)
    candidates = [
        c
        for c in cert.subkeys
        if c.can_sign and c.secret_body and not c.revoked and (c.expires is None or c.expires > now)
    ]
    candidates.sort(key=lambda c: c.key.created, reverse=True)
    if cert.primary.can_sign and cert.primary.secret_body:
        candidates.append(cert.primary)
    if not candidates:
        raise MalformedError(f"{source}: no usable signing key (no secret key with the sign flag)", subject=source)
    last: UsageError | None = None
    for comp in candidates:
        assert comp.secret_body is not None
        try:
            plain = _decrypt_secret(comp.secret_body, passphrase, source=source)
        except UsageError as exc:  # a stub subkey: try the next candidate
            last = exc
            if "stub" in exc.message:
                continue
            raise
        return LocalSigner(_private_key(comp.key, plain, source=source), key=comp.key)
    assert last is not None
    raise last


# --------------------------------------------------------------------------------------------------------------
# Key generation and certificates from plain keys


def _public_body(private_key: PrivateKey, created: datetime) -> bytes:
    ts = struct.pack(">I", int(created.timestamp()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        nums = private_key.public_key().public_numbers()
        return b"\x04" + ts + bytes([PK_RSA]) + mpi(nums.n) + mpi(nums.e)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        point = b"\x40" + private_key.public_key().public_bytes_raw()
        return b"\x04" + ts + bytes([PK_EDDSA, len(ED25519_OID)]) + ED25519_OID + mpi(point)
    raise UsageError(f"unsupported key type {type(private_key).__name__} for OpenPGP (use RSA or Ed25519)")


def _key_packet(private_key: PrivateKey, created: datetime) -> KeyPacket:
    body = _public_body(private_key, created)
    key, _ = parse_key_packet(body, source="generated key")
    return key


def _check_created(created: datetime) -> datetime:
    if created.tzinfo is None:
        raise UsageError("key creation time must be timezone-aware")
    return created.astimezone(UTC).replace(microsecond=0)


def subpacket(kind: int, data: bytes) -> bytes:
    n = len(data) + 1
    if n < 192:
        head = bytes([n])
    elif n < 8384:
        n -= 192
        head = bytes([(n >> 8) + 192, n & 0xFF])
    else:
        head = b"\xff" + struct.pack(">I", n)
    return head + bytes([kind]) + data


def signature_value_fields(pubkey_algorithm: int, value: bytes) -> bytes:
    """Encode a raw signature value as the packet's MPIs."""
    if pubkey_algorithm in (PK_RSA, PK_RSA_S):
        return mpi(value)
    if pubkey_algorithm == PK_EDDSA:
        if len(value) != 64:
            raise UsageError(f"an EdDSA signature is 64 bytes (r||s), got {len(value)}")
        return mpi(value[:32]) + mpi(value[32:])
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
    if hid is None or hash_algorithm not in ("sha256", "sha384", "sha512"):
        raise UsageError(f"unsupported OpenPGP hash {hash_algorithm!r}; use sha256, sha384 or sha512")
    fpr = bytes.fromhex(signer.fingerprint)
    hashed = subpacket(2, struct.pack(">I", int(_check_created(created).timestamp()))) + extra_hashed
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


def _certificate_packets(
    private_key: PrivateKey, *, uid: str, created: datetime, expires: datetime | None = None, flags: int = 0x03
) -> tuple[KeyPacket, bytes, bytes]:
    """(key, uid packet, self-signature packet) for a v4 primary key that certifies and signs."""
    if not uid or len(uid) > 1024 or any(ord(ch) < 0x20 for ch in uid):
        raise UsageError(f"invalid OpenPGP user ID {uid!r}", subject=uid)
    created = _check_created(created)
    key = _key_packet(private_key, created)
    signer = LocalSigner(private_key, key=key)
    uid_bytes = uid.encode()
    if expires is not None and _check_created(expires) <= created:
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
        signer,
        sig_type=0x13,
        created=created,
        data_hash=hashlib.sha512(key.hash_prefix() + _uid_prefix(uid_bytes)),
        extra_hashed=extra,
    )
    return key, encode_packet(TAG_USER_ID, uid_bytes), selfsig


def certificate_from_private_key(
    private_key: PrivateKey, *, uid: str, created: datetime, expires: datetime | None = None
) -> str:
    """The armored public certificate of a plain RSA or Ed25519 key: a v4 primary key that certifies and signs.

    The fingerprint depends only on (key, ``created``), so a service can rebuild the same certificate; RSA
    PKCS#1 v1.5 and Ed25519 are deterministic, so the whole certificate is too. ``expires`` sets a key expiry.
    """
    key, uid_packet, selfsig = _certificate_packets(private_key, uid=uid, created=created, expires=expires)
    return armor(encode_packet(TAG_PUBLIC_KEY, key.public_body) + uid_packet + selfsig, "PUBLIC KEY BLOCK")


def signer_from_private_key(private_key: PrivateKey, *, created: datetime) -> OpenPGPSigner:
    """An :class:`OpenPGPSigner` for a plain key whose certificate was built with the same ``created``."""
    return LocalSigner(private_key, key=_key_packet(private_key, _check_created(created)))


S2K_COUNT_OCTET = 0xE0  # 16 MiB of SHA-256 per unlock: about 50 ms here, costly for a guesser


def _secret_part(private_key: PrivateKey, passphrase: bytes | None) -> bytes:
    if isinstance(private_key, rsa.RSAPrivateKey):
        nums = private_key.private_numbers()
        p, q = sorted((nums.p, nums.q))  # OpenPGP wants p < q, with u = p^-1 mod q
        plain = mpi(nums.d) + mpi(p) + mpi(q) + mpi(pow(p, -1, q))
    else:
        plain = mpi(private_key.private_bytes_raw())
    if passphrase is None:
        return b"\x00" + plain + struct.pack(">H", sum(plain) & 0xFFFF)
    salt, iv = os.urandom(8), os.urandom(16)
    spec = bytes([3, 8]) + salt + bytes([S2K_COUNT_OCTET])
    key = _s2k_key(_Reader(spec, source="s2k", what="s2k"), passphrase, 32, source="s2k")
    enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
    payload = plain + hashlib.sha1(plain, usedforsecurity=False).digest()
    return b"\xfe\x09" + spec + iv + enc.update(payload) + enc.finalize()


@dataclass(frozen=True)
class GeneratedKey:
    """A new OpenPGP key: armored secret key (give it mode 0600), armored public certificate, fingerprint."""

    fingerprint: str
    public_armored: str
    secret_armored: str = field(repr=False)


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
    key, uid_packet, selfsig = _certificate_packets(private_key, uid=uid, created=created)
    public = encode_packet(TAG_PUBLIC_KEY, key.public_body) + uid_packet + selfsig
    secret = encode_packet(TAG_SECRET_KEY, key.public_body + _secret_part(private_key, passphrase))
    secret += uid_packet + selfsig
    return GeneratedKey(
        fingerprint=key.fingerprint,
        public_armored=armor(public, "PUBLIC KEY BLOCK"),
        secret_armored=armor(secret, "PRIVATE KEY BLOCK"),
    )


__all__ = [
    "KEY_ALGORITHMS",
    "Certificate",
    "CertificateInfo",
    "GeneratedKey",
    "LocalSigner",
    "OpenPGPSigner",
    "armor",
    "certificate_from_private_key",
    "dearmor",
    "generate_key",
    "inspect_certificate",
    "load_signer",
    "parse_certificate",
    "signer_from_private_key",
]
