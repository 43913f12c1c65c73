"""Secret keys: S2K key derivation, AES-CFB decryption and integrity check, and the reverse for keys we write.

Read: what ``gpg --export-secret-keys`` and ``sq key generate`` write (no protection, or S2K usage 254/255 with
simple, salted or iterated+salted S2K over SHA-1/SHA-2 and AES-128/192/256). The RFC 9580 AEAD protection
(usage 253), CAST5, 3DES and IDEA are refused with a message naming them. Write: AES-256 with an iterated, salted
SHA-256 S2K and the SHA-1 integrity hash, which every peer reads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from ..errors import MalformedError, UsageError
from ._keys import KeyPacket
from ._packets import HASH_IDS, MAX_S2K_COUNT, PK_ED25519, PK_NAMES, PrivateKey, Reader, mpi, pad

_CIPHERS: dict[int, int] = {7: 16, 8: 24, 9: 32}  # AES-128/192/256: key sizes. CAST5/3DES/IDEA keys are refused.
S2K_COUNT_OCTET = 0xE0  # 16 MiB of SHA-256 per unlock: about 50 ms here, costly for a guesser


class StubKeyError(UsageError):
    """A secret-key packet without its secret (gpg's ``gnu-dummy`` S2K): the key lives on a card or elsewhere."""


def _s2k_key(spec: Reader, passphrase: bytes, key_len: int, *, source: str) -> bytes:
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


def decrypt_secret(secret: bytes, passphrase: bytes | None, *, source: str) -> bytes:
    """Return the plaintext secret MPIs of a v4 secret-key packet (after the public part).

    Raises:
        StubKeyError: the packet holds no secret (a ``gnu-dummy`` stub).
        UsageError: a passphrase is needed, or the one given is wrong.
        MalformedError: an unsupported protection, or a damaged key.
    """
    r = Reader(secret, source=source, what="secret key")
    usage = r.u8()
    if usage == 0:
        plain = r.rest()
        body, check = plain[:-2], plain[-2:]
        if len(plain) < 2 or sum(body) & 0xFFFF != int.from_bytes(check, "big"):
            raise MalformedError(f"{source}: secret key checksum mismatch (damaged key)", subject=source)
        return body
    if usage not in (254, 255):
        what = "AEAD (RFC 9580) protection" if usage == 253 else f"protection {usage}"
        raise MalformedError(
            f"{source}: secret key {what} is not supported (expected gpg's or sq's S2K)", subject=source
        )
    cipher = r.u8()
    if r.pos < len(r.data) and r.data[r.pos] == 101:  # GNU extension S2K 101: no secret here
        raise StubKeyError(
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


def private_key(key: KeyPacket, plain: bytes, *, source: str) -> PrivateKey:
    """The ``cryptography`` private key of ``key`` from its decrypted secret MPIs; it must match the public part."""
    pub = key.public_key
    r = Reader(plain, source=source, what="secret key material")
    if isinstance(pub, rsa.RSAPublicKey):
        d, p, q = (int.from_bytes(r.mpi(), "big") for _ in range(3))
        nums = pub.public_numbers()
        if p * q != nums.n:
            raise MalformedError(f"{source}: RSA secret key does not match its public key", subject=source)
        try:  # OpenSSL checks d against e, p and q: a damaged d (the SHA-1 checksum is weak) fails here
            return rsa.RSAPrivateNumbers(
                p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), nums
            ).private_key()
        except ValueError:
            raise MalformedError(f"{source}: invalid RSA secret key", subject=source) from None
    if isinstance(pub, ed25519.Ed25519PublicKey):
        seed = r.take(32) if key.algorithm == PK_ED25519 else pad(r.mpi(), 32)
        priv = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        if priv.public_key().public_bytes_raw() != pub.public_bytes_raw():
            raise MalformedError(f"{source}: Ed25519 secret key does not match its public key", subject=source)
        return priv
    if isinstance(pub, ec.EllipticCurvePublicKey):
        d = int.from_bytes(r.mpi(), "big")
        try:
            ecpriv = ec.derive_private_key(d, pub.curve)
        except ValueError:
            raise MalformedError(f"{source}: invalid ECDSA secret key", subject=source) from None
        if ecpriv.public_key().public_numbers() != pub.public_numbers():
            raise MalformedError(f"{source}: ECDSA secret key does not match its public key", subject=source)
        return ecpriv
    raise MalformedError(f"{source}: key algorithm {PK_NAMES.get(key.algorithm)} cannot sign here", subject=source)


def secret_part(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """The secret part of a v4 secret-key packet for ``key``: plain with a checksum, or S2K-protected."""
    if isinstance(key, rsa.RSAPrivateKey):
        nums = key.private_numbers()
        p, q = sorted((nums.p, nums.q))  # OpenPGP wants p < q, with u = p^-1 mod q
        plain = mpi(nums.d) + mpi(p) + mpi(q) + mpi(pow(p, -1, q))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        plain = mpi(key.private_numbers().private_value)
    else:
        plain = mpi(key.private_bytes_raw())
    if passphrase is None:
        return b"\x00" + plain + struct.pack(">H", sum(plain) & 0xFFFF)
    salt, iv = os.urandom(8), os.urandom(16)
    spec = bytes([3, 8]) + salt + bytes([S2K_COUNT_OCTET])
    aes_key = _s2k_key(Reader(spec, source="s2k", what="s2k"), passphrase, 32, source="s2k")
    enc = Cipher(algorithms.AES(aes_key), CFB(iv)).encryptor()
    payload = plain + hashlib.sha1(plain, usedforsecurity=False).digest()
    return b"\xfe\x09" + spec + iv + enc.update(payload) + enc.finalize()
