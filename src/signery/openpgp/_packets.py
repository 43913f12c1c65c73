"""OpenPGP constants and packet framing: split binary OpenPGP into packets, write packets, MPIs and subpackets."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import MalformedError

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
SIGNING_HASHES = ("sha256", "sha384", "sha512")  # what signery signs with (every peer verifies these)

ED25519_OID = bytes.fromhex("2b06010401da470f01")  # 1.3.6.1.4.1.11591.15.1, EdDSA legacy over Ed25519
# NIST curves for ECDSA (RFC 6637): OID, the curve and its size in bytes.
EC_CURVES: dict[bytes, tuple[type[ec.EllipticCurve], int]] = {
    bytes.fromhex("2a8648ce3d030107"): (ec.SECP256R1, 32),
    bytes.fromhex("2b81040022"): (ec.SECP384R1, 48),
    bytes.fromhex("2b81040023"): (ec.SECP521R1, 66),
}
EC_OIDS: dict[str, bytes] = {  # the same, by curve name
    "secp256r1": bytes.fromhex("2a8648ce3d030107"),
    "secp384r1": bytes.fromhex("2b81040022"),
    "secp521r1": bytes.fromhex("2b81040023"),
}

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

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


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


def _length(n: int) -> bytes:
    """A new-format body length (packets and subpackets share the encoding)."""
    if n < 192:
        return bytes([n])
    if n < 8384:
        n -= 192
        return bytes([(n >> 8) + 192, n & 0xFF])
    return b"\xff" + struct.pack(">I", n)


def encode_packet(tag: int, body: bytes) -> bytes:
    """New-format packet framing, as gpg and sq write."""
    return bytes([0xC0 | tag]) + _length(len(body)) + body


def subpacket(kind: int, data: bytes) -> bytes:
    return _length(len(data) + 1) + bytes([kind]) + data


def mpi(value: int | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    raw = raw.lstrip(b"\x00")
    return struct.pack(">H", int.from_bytes(raw, "big").bit_length()) + raw


def pad(raw: bytes, size: int) -> bytes:
    """Left-pad an MPI's bytes (leading zeros are stripped on the wire) to a fixed-size field."""
    return raw.rjust(size, b"\x00") if len(raw) <= size else raw


class Reader:
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
