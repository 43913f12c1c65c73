"""Hybrid bundles: an Ed25519 key and an ML-DSA-65 key signing together, as one identity.

A bundle is one signing identity made of two keys: the native format puts a signature by each, over the same DSSE
PAE, in one envelope, so that a package stays authentic while either algorithm holds. On disk it is one PEM file
holding two blocks, the Ed25519 key first and the ML-DSA-65 key second: two PKCS#8 ``PRIVATE KEY`` blocks (both
``ENCRYPTED PRIVATE KEY`` under one passphrase, or neither) for the private file, two SPKI ``PUBLIC KEY`` blocks
for the public one. Its key id is :func:`hybrid_key_id`; each half keeps its own. :func:`signery.keys.is_hybrid_pem`
tells a bundle file from a single key (the single-key loaders refuse bundles).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

# cryptography's serialization module is imported where it is used: importing it costs more than verifying a
# small plugin (it pulls in SSH keys and every cipher), and the common case, an Ed25519 key, never needs it
# (see _ED25519_SPKI). RSA padding and prehashing likewise.
if TYPE_CHECKING:
    pass

from .errors import MalformedError, UsageError
from .keys import (
    FileSigner,
    HashName,
    KeyPairPaths,
    PublicKey,
    RsaPadding,
    Signer,
    _pem_blocks,
    _write_key_pair,
    generate_private_key,
    is_hybrid_pem,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    short_id,
    spki_der,
)

HYBRID_ALGORITHM = "ed25519+ml-dsa-65"  # the one hybrid bundle: what algorithm_name says of a HybridSigner's halves


def _split_bundle(data: bytes, source: str) -> tuple[bytes, bytes]:
    blocks = _pem_blocks(data.strip())
    if not is_hybrid_pem(data) or len(blocks) != 2:
        raise MalformedError(
            f"{source} is not a hybrid key bundle (two PEM keys: Ed25519, then ML-DSA-65)", subject=source
        )
    return blocks[0][1], blocks[1][1]


def _check_bundle_order(classical: object, post_quantum: object, source: str) -> None:
    if not isinstance(classical, ed25519.Ed25519PublicKey) or not isinstance(post_quantum, mldsa.MLDSA65PublicKey):
        raise MalformedError(
            f"{source}: a hybrid key bundle holds an Ed25519 key and then an ML-DSA-65 key, not "
            f"{type(classical).__name__} and {type(post_quantum).__name__}",
            subject=source,
        )


def hybrid_key_id(classical: PublicKey, post_quantum: PublicKey) -> str:
    """A bundle's key id: lowercase hex SHA-256 of the Ed25519 key's DER SPKI followed by the ML-DSA-65 key's.

    DER is self-delimiting, so the pair is unambiguous, and it is never a single key's id (no SPKI has bytes after
    its end).
    """
    _check_bundle_order(classical, post_quantum, source="hybrid key")
    return hashlib.sha256(spki_der(classical) + spki_der(post_quantum)).hexdigest()


class HybridSigner:
    """An Ed25519 signer and an ML-DSA-65 signer that sign together, as one identity (a "key pair bundle").

    The halves are any :class:`Signer` (key files, service keys...). Only the native format signs with a bundle
    (:meth:`sign_all`: both signatures over the same message, Ed25519 first); :meth:`sign`, :meth:`sign_digest` and
    :meth:`public_key` are usage errors naming that, so no other format signs with one half unnoticed.
    """

    def __init__(self, classical: Signer, post_quantum: Signer, *, name: str | None = None) -> None:
        pair = (classical.public_key(), post_quantum.public_key())
        _check_bundle_order(*pair, source=name or "hybrid key")
        self.halves: tuple[Signer, Signer] = (classical, post_quantum)
        self._key_id = hybrid_key_id(*pair)
        self.name = name

    def __repr__(self) -> str:  # never show key material
        return f"HybridSigner(key_id={short_id(self._key_id)!r}, algorithm={HYBRID_ALGORITHM!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def half_key_ids(self) -> tuple[str, str]:
        """The key ids of the Ed25519 and the ML-DSA-65 half, in that order."""
        return self.halves[0].key_id, self.halves[1].key_id

    def public_keys(self) -> tuple[PublicKey, PublicKey]:
        return self.halves[0].public_key(), self.halves[1].public_key()

    def _refuse(self) -> UsageError:
        return UsageError(
            "a hybrid key bundle (Ed25519 + ML-DSA-65) signs only the native format, with both keys at once",
            subject=self.name or short_id(self._key_id),
            hint="sign with --format native, or with one of its keys on its own",
        )

    def public_key(self) -> PublicKey:
        raise self._refuse()

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        raise self._refuse()

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        raise self._refuse()

    def sign_all(self, message: bytes) -> tuple[tuple[str, bytes], ...]:
        """``(key id, signature)`` of each half over ``message``: Ed25519 first, then ML-DSA-65."""
        return tuple((half.key_id, half.sign(message)) for half in self.halves)


def generate_hybrid_keys() -> tuple[ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey]:
    """A new bundle's two private keys."""
    post_quantum = generate_private_key("ml-dsa-65")
    assert isinstance(post_quantum, mldsa.MLDSA65PrivateKey)
    return ed25519.Ed25519PrivateKey.generate(), post_quantum


def hybrid_private_pem(
    classical: ed25519.Ed25519PrivateKey, post_quantum: mldsa.MLDSA65PrivateKey, *, passphrase: bytes | None = None
) -> bytes:
    """The private bundle file: the two PKCS#8 PEM blocks, Ed25519 first, both encrypted with ``passphrase``."""
    _check_bundle_order(classical.public_key(), post_quantum.public_key(), source="hybrid key")
    return private_key_pem(classical, passphrase=passphrase) + private_key_pem(post_quantum, passphrase=passphrase)


def hybrid_public_pem(classical: PublicKey, post_quantum: PublicKey) -> bytes:
    """The public bundle file: the two SPKI PEM blocks, Ed25519 first."""
    _check_bundle_order(classical, post_quantum, source="hybrid key")
    return public_key_pem(classical) + public_key_pem(post_quantum)


def load_hybrid_private_keys(
    data: bytes, *, passphrase: bytes | None = None, source: str = "hybrid key"
) -> tuple[ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey]:
    """Parse a private bundle file (see :func:`hybrid_private_pem`)."""
    first, second = _split_bundle(data, source)
    classical = load_private_key(first, passphrase=passphrase, source=f"{source} (Ed25519 half)")
    post_quantum = load_private_key(second, passphrase=passphrase, source=f"{source} (ML-DSA-65 half)")
    _check_bundle_order(classical.public_key(), post_quantum.public_key(), source=source)
    assert isinstance(classical, ed25519.Ed25519PrivateKey) and isinstance(post_quantum, mldsa.MLDSA65PrivateKey)
    return classical, post_quantum


def load_hybrid_public_keys(
    data: bytes, *, source: str = "hybrid key"
) -> tuple[ed25519.Ed25519PublicKey, mldsa.MLDSA65PublicKey]:
    """Parse a public bundle file (see :func:`hybrid_public_pem`)."""
    first, second = _split_bundle(data, source)
    if b"PRIVATE KEY" in first + second:
        raise MalformedError(f"{source} holds private keys; give the public bundle", subject=source)
    classical = load_public_key(first, source=f"{source} (Ed25519 half)")
    post_quantum = load_public_key(second, source=f"{source} (ML-DSA-65 half)")
    _check_bundle_order(classical, post_quantum, source=source)
    assert isinstance(classical, ed25519.Ed25519PublicKey) and isinstance(post_quantum, mldsa.MLDSA65PublicKey)
    return classical, post_quantum


def load_hybrid_signer(data: bytes, *, passphrase: bytes | None = None, source: str = "hybrid key") -> HybridSigner:
    """A :class:`HybridSigner` over a private bundle file's two keys."""
    classical, post_quantum = load_hybrid_private_keys(data, passphrase=passphrase, source=source)
    return HybridSigner(FileSigner(classical, name=source), FileSigner(post_quantum, name=source), name=source)


def save_hybrid_key_pair(
    private_path: Path,
    public_path: Path,
    classical: ed25519.Ed25519PrivateKey,
    post_quantum: mldsa.MLDSA65PrivateKey,
    *,
    passphrase: bytes | None = None,
    overwrite: bool = False,
) -> KeyPairPaths:
    """Write a bundle's private file (mode 0600, atomically) and its public file beside it."""
    return _write_key_pair(
        private_path,
        public_path,
        lambda: hybrid_private_pem(classical, post_quantum, passphrase=passphrase),
        lambda: hybrid_public_pem(classical.public_key(), post_quantum.public_key()),
        overwrite=overwrite,
    )


__all__ = [
    "HYBRID_ALGORITHM",
    "HybridSigner",
    "generate_hybrid_keys",
    "hybrid_key_id",
    "hybrid_private_pem",
    "hybrid_public_pem",
    "load_hybrid_private_keys",
    "load_hybrid_public_keys",
    "load_hybrid_signer",
    "save_hybrid_key_pair",
]
