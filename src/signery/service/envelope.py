"""Envelope encryption of private keys at rest.

Each key version gets its own random AES-256 data key. The private key (PKCS#8 DER) is sealed with the data key, and
the data key is sealed with the master key, both with AES-256-GCM and with the key's name, version and id as
associated data: a ciphertext copied onto another key's row, or another version, fails to open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigError, EnvironmentFailure
from ..keys import PrivateKey
from .settings import MasterKey

NONCE_BYTES = 12  # the GCM standard nonce; random is safe here: each data key seals exactly one message
_FORMAT = b"signery-key-v1"


@dataclass(frozen=True)
class SealedKey:
    """What the database holds for one key version: nothing here is secret without the master key."""

    wrapped_data_key: bytes
    ciphertext: bytes
    master_key_id: str

    def __repr__(self) -> str:
        return f"SealedKey(master_key_id={self.master_key_id!r}, {len(self.ciphertext)} bytes)"


def _aad(*, name: str, version: int, key_id: str, part: bytes) -> bytes:
    return b"\0".join((_FORMAT, part, name.encode(), str(version).encode(), key_id.encode()))


def seal_private_key(private_key: PrivateKey, *, master: MasterKey, name: str, version: int, key_id: str) -> SealedKey:
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = nonce + AESGCM(data_key).encrypt(
        nonce, der, _aad(name=name, version=version, key_id=key_id, part=b"k")
    )
    wrap_nonce = os.urandom(NONCE_BYTES)
    wrapped = wrap_nonce + AESGCM(master.secret).encrypt(
        wrap_nonce, data_key, _aad(name=name, version=version, key_id=key_id, part=b"dek")
    )
    return SealedKey(wrapped_data_key=wrapped, ciphertext=ciphertext, master_key_id=master.key_id)


def open_private_key(sealed: SealedKey, *, master: MasterKey, name: str, version: int, key_id: str) -> PrivateKey:
    """Unseal a key version.

    Raises:
        ConfigError: the database was sealed under another master key.
        EnvironmentFailure: the stored ciphertext was altered or moved (the tag does not check).
    """
    if sealed.master_key_id != master.key_id:
        raise ConfigError(
            f"key {name} v{version} is sealed under master key {sealed.master_key_id}, not {master.key_id}",
            subject=name,
            hint="start the server with the master key this database was created with",
        )
    try:
        data_key = AESGCM(master.secret).decrypt(
            sealed.wrapped_data_key[:NONCE_BYTES],
            sealed.wrapped_data_key[NONCE_BYTES:],
            _aad(name=name, version=version, key_id=key_id, part=b"dek"),
        )
        der = AESGCM(data_key).decrypt(
            sealed.ciphertext[:NONCE_BYTES],
            sealed.ciphertext[NONCE_BYTES:],
            _aad(name=name, version=version, key_id=key_id, part=b"k"),
        )
    except (InvalidTag, ValueError):
        raise EnvironmentFailure(
            f"stored key {name} v{version} does not decrypt: the database row was altered", subject=name
        ) from None
    # Not keys.load_private_key: it strips whitespace, which corrupts DER that happens to end in 0x20 or 0x0a.
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | mldsa.MLDSA65PrivateKey
    ):
        raise EnvironmentFailure(f"stored key {name} v{version} has an unsupported type", subject=name)
    return key
