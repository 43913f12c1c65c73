"""The key store's values: a key and its versions as read from the database, what to create, what to sign.

:class:`KeyVersion` is the one description of a key version: every reader uses it, from the public API to signing.
It carries the public key (so verification never opens the private one) and either the sealed private key or, for
a key kept in the server's PKCS#11 token, the token object's reference; only
:class:`~signery.service.keys.cache.KeyCache` opens either, and only to sign.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

from ... import x509
from ..._internal.names import check_name
from ...errors import NotFoundError, PolicyViolationError, Reason, UsageError
from ...keys import ALGORITHMS, Algorithm, HashName, PrivateKey, PublicKey, RsaPadding, load_public_key
from ..envelope import SealedKey, open_private_key
from ..settings import MasterKey
from ..storage import KeyRow, KeyVersionRow

KeyType = Literal[Algorithm, "openpgp-rsa-3072", "openpgp-ed25519", "x509"]  # a plain key is one of keys.ALGORITHMS
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
OPENPGP_TYPES = {"openpgp-rsa-3072": "rsa-3072", "openpgp-ed25519": "ed25519"}
MAX_MESSAGE_BYTES = 64 * 1024  # small statements only: large data is hashed by the client, digests travel
MAX_VERSION = 1_000_000  # far beyond any rotation schedule; keeps integers inside every database's INTEGER
MAX_UID_CHARS = 256  # an OpenPGP user id is a name and an address
Storage = Literal["sealed", "pkcs11"]
STORAGES: tuple[str, ...] = get_args(Storage)
# X.509 keys stay sealed: a certificate is signed by a private key in this process (cryptography's builder takes no
# external signer), and ML-DSA is not a PKCS#11 3.0 mechanism.
TOKEN_KEY_TYPES = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", *OPENPGP_TYPES)
DIGEST_SIZES: dict[str, int] = {"sha256": 32, "sha384": 48, "sha512": 64}
_HASH_BY_SIZE: dict[int, HashName] = {32: "sha256", 48: "sha384", 64: "sha512"}


def algorithm_of(key_type: str, params: dict[str, Any]) -> str:
    """The key algorithm behind a key type (an x509 key's comes from its parameters)."""
    if key_type == "x509" or (key_type in OPENPGP_TYPES and "key_algorithm" in params):  # imported OpenPGP keys
        return str(params["key_algorithm"])
    return OPENPGP_TYPES.get(key_type, key_type)


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key, detached from any database session.

    ``sealed`` is the private key as stored: nothing without the master key, and never part of a response.
    A token-backed version has no ``sealed`` key but a ``token_object``: the PKCS#11 URI path of its private key
    in the server's token (no module, no PIN).
    """

    name: str
    version: int
    key_id: str
    algorithm: str
    created_at: str
    public_key_pem: str
    certificate_pem: str | None
    openpgp_certificate: str | None
    openpgp_created: int | None
    sealed: SealedKey | None = field(repr=False)
    token_object: str | None = None

    @classmethod
    def of(cls, row: KeyVersionRow) -> KeyVersion:
        return cls(
            name=row.name,
            version=row.version,
            key_id=row.key_id,
            algorithm=row.algorithm,
            created_at=row.created_at,
            public_key_pem=row.public_key_pem,
            certificate_pem=row.certificate_pem,
            openpgp_certificate=row.openpgp_certificate,
            openpgp_created=row.openpgp_created,
            sealed=None
            if row.token_object is not None
            or row.wrapped_data_key is None
            or row.encrypted_private_key is None
            or row.master_key_id is None
            else SealedKey(
                wrapped_data_key=row.wrapped_data_key,
                ciphertext=row.encrypted_private_key,
                master_key_id=row.master_key_id,
            ),
            token_object=row.token_object,
        )

    @property
    def storage(self) -> Storage:
        return "pkcs11" if self.token_object is not None else "sealed"

    @cached_property
    def public_key(self) -> PublicKey:
        """The public key, parsed once per loaded version."""
        return load_public_key(self.public_key_pem.encode(), source=f"{self.name} v{self.version}")

    def unseal(self, master: MasterKey) -> PrivateKey:
        """The private key. Signing goes through :class:`~signery.service.keys.cache.KeyCache`, which keeps it.

        Raises:
            UsageError: the version is held in the PKCS#11 token: its private key never leaves it.
        """
        if self.sealed is None:
            raise UsageError(
                f"key {self.name} v{self.version} is held in the PKCS#11 token: its private key never leaves it",
                reason=Reason.POLICY_VIOLATION,
                subject=self.name,
            )
        return open_private_key(self.sealed, master=master, name=self.name, version=self.version, key_id=self.key_id)


@dataclass(frozen=True)
class Key:
    """A named key: its type, its version policy and (unless listed without them) its versions, oldest first."""

    name: str
    type: str
    created_at: str
    latest_version: int
    min_sign_version: int
    min_verify_version: int
    deletion_allowed: bool
    params: dict[str, Any]
    versions: dict[int, KeyVersion] = field(default_factory=dict)
    storage: str = "sealed"  # where new versions are made: "sealed" or "pkcs11"

    @classmethod
    def of(cls, row: KeyRow, versions: list[KeyVersionRow] | None = None) -> Key:
        return cls(
            name=row.name,
            type=row.type,
            created_at=row.created_at,
            latest_version=row.latest_version,
            min_sign_version=row.min_sign_version,
            min_verify_version=row.min_verify_version,
            deletion_allowed=row.deletion_allowed,
            params=json.loads(row.params),
            versions={v.version: KeyVersion.of(v) for v in sorted(versions or [], key=lambda v: v.version)},
            storage=row.storage or "sealed",
        )

    @property
    def algorithm(self) -> str:
        return algorithm_of(self.type, self.params)

    def signing_version(self, version: int | None) -> KeyVersion:
        """The version that signs: ``version``, or the latest; refused below ``min_sign_version``."""
        wanted = self.latest_version if version is None else version
        if wanted < self.min_sign_version:
            raise PolicyViolationError(
                f"key {self.name} v{wanted} may no longer sign (minimum v{self.min_sign_version})", subject=self.name
            )
        v = self.versions.get(wanted)
        if v is None:
            raise NotFoundError(
                f"key {self.name} has no version {wanted}", reason=Reason.UNKNOWN_KEY, subject=self.name
            )
        return v

    def verifying_versions(self, version: int | None) -> list[KeyVersion]:
        """The versions a signature may come from, newest first: ``version`` alone, or every one from
        ``min_verify_version`` up; refused for a version that may not verify."""
        allowed = {n: v for n, v in self.versions.items() if n >= self.min_verify_version}
        if version is None:
            return sorted(allowed.values(), key=lambda v: -v.version)
        if version not in allowed:
            raise PolicyViolationError(f"key {self.name} v{version} may not verify", subject=self.name)
        return [allowed[version]]


@dataclass(frozen=True)
class KeySpec:
    """What to create: a key type plus, for X.509, a template, subject and issuer; for OpenPGP, a user id."""

    name: str
    type: str
    template: str | None = None
    subject: str | None = None
    issuer: str | None = None
    key_algorithm: str | None = None
    days: int = 3650
    uid: str | None = None
    storage: str = "sealed"  # "pkcs11": every version is generated, and stays, in the server's PKCS#11 token

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.type not in KEY_TYPES:
            raise UsageError(f"unknown key type {self.type!r}; choose one of {', '.join(KEY_TYPES)}", subject=self.type)
        if self.storage not in STORAGES:
            raise UsageError(
                f"unknown storage {self.storage!r}; choose one of {', '.join(STORAGES)}", subject=self.name
            )
        if self.storage == "pkcs11" and self.type not in TOKEN_KEY_TYPES:
            raise UsageError(
                f"{self.type} keys cannot be kept in the PKCS#11 token; one of {', '.join(TOKEN_KEY_TYPES)} can",
                subject=self.name,
            )
        if self.type == "x509":
            if self.template is None or self.subject is None:
                raise UsageError("an x509 key needs a template and a subject", subject=self.name)
            x509.check_template(self.template)
            x509.parse_subject(self.subject)
            if self.issuer is not None:
                check_name(self.issuer, what="issuer")
            if self.key_algorithm is not None and self.key_algorithm not in ALGORITHMS:
                raise UsageError(f"unknown key algorithm {self.key_algorithm!r}", subject=self.key_algorithm)
            if self.key_algorithm == "ml-dsa-65":  # in keys.ALGORITHMS, but the service issues no ML-DSA certificates
                raise UsageError("x509 keys here are not ML-DSA-65 keys", subject=self.key_algorithm)
            x509.validity(self.days)
        elif any(v is not None for v in (self.template, self.subject, self.issuer, self.key_algorithm)):
            raise UsageError("template, subject, issuer and key_algorithm are for x509 keys only", subject=self.name)
        if self.uid is not None:
            if self.type not in OPENPGP_TYPES:
                raise UsageError("uid is for OpenPGP keys only", subject=self.name)
            if not self.uid or len(self.uid) > MAX_UID_CHARS or any(ord(c) < 32 for c in self.uid):
                raise UsageError(f"uid must be 1 to {MAX_UID_CHARS} printable characters", subject=self.name)

    def params(self) -> dict[str, Any]:
        if self.type == "x509":
            return {
                "template": self.template,
                "subject": self.subject,
                "issuer": self.issuer,
                "key_algorithm": self.key_algorithm or x509.default_algorithm(self.template or ""),
                "days": self.days,
            }
        if self.type in OPENPGP_TYPES:
            return {"uid": self.uid or f"{self.name} <{self.name}@signery.invalid>"}
        return {}

    def same_as(self, key: Key) -> bool:
        """For idempotent bootstrap: does an existing key already answer this spec?"""
        same_params = all(key.params.get(k) == v for k, v in self.params().items())
        return key.type == self.type and key.storage == self.storage and same_params


@dataclass(frozen=True)
class SignItem:
    """One thing to sign: a digest (with its hash) or a small message."""

    digest: bytes | None = None
    message: bytes | None = None
    hash_algorithm: HashName | None = None  # None: the key's default for messages, the digest's length for digests
    signature_algorithm: RsaPadding = "pss"
    version: int | None = None

    def __post_init__(self) -> None:
        if (self.digest is None) == (self.message is None):
            raise UsageError("give exactly one of digest and message")
        if self.hash_algorithm is None and self.digest is not None:
            if len(self.digest) not in _HASH_BY_SIZE:
                raise UsageError(f"a digest of {len(self.digest)} bytes is not SHA-256, SHA-384 or SHA-512")
            object.__setattr__(self, "hash_algorithm", _HASH_BY_SIZE[len(self.digest)])
        if self.hash_algorithm is not None and self.hash_algorithm not in DIGEST_SIZES:
            raise UsageError(f"unsupported hash algorithm {self.hash_algorithm!r}", subject=self.hash_algorithm)
        if self.signature_algorithm not in ("pss", "pkcs1v15", "pkcs1v15-none"):
            raise UsageError(f"unsupported signature algorithm {self.signature_algorithm!r}")
        if self.signature_algorithm == "pkcs1v15-none" and self.digest is None:
            raise UsageError("pkcs1v15-none (PKCS#1 v1.5 without a DigestInfo) signs digests only, not messages")
        size = DIGEST_SIZES[self.hash_algorithm or "sha256"]
        if self.digest is not None and len(self.digest) != size:
            raise UsageError(f"a {self.hash_algorithm} digest is {size} bytes, got {len(self.digest)}")
        if self.message is not None and len(self.message) > MAX_MESSAGE_BYTES:
            raise UsageError(f"messages are at most {MAX_MESSAGE_BYTES} bytes; send a digest instead")
        if self.version is not None and not 1 <= self.version <= MAX_VERSION:
            raise UsageError(f"version must be between 1 and {MAX_VERSION}")

    def audit_digest(self) -> str:
        if self.digest is not None:
            return f"{self.hash_algorithm or 'sha256'}:{self.digest.hex()}"
        assert self.message is not None
        return f"message-sha256:{hashlib.sha256(self.message).hexdigest()}"


@dataclass(frozen=True)
class Signature:
    signature: bytes
    key_id: str
    version: int
    algorithm: str


@dataclass(frozen=True)
class Verdict:
    valid: bool
    key_id: str | None
    version: int | None
    reason: str | None = None


@dataclass(frozen=True)
class OpenPGPSignature:
    signature: bytes
    fingerprint: str
    pubkey_algorithm: int
    key_created: int
    version: int


__all__ = [
    "KEY_TYPES",
    "MAX_MESSAGE_BYTES",
    "MAX_VERSION",
    "OPENPGP_TYPES",
    "STORAGES",
    "TOKEN_KEY_TYPES",
    "Key",
    "KeySpec",
    "KeyVersion",
    "OpenPGPSignature",
    "SignItem",
    "Signature",
    "Verdict",
    "algorithm_of",
]
