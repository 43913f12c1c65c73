"""Wire schemas of the HTTP API: requests (``...Create``, ``...Request``) apart from responses (``...Public``).

Responses are built only from public fields, so no private material can leak through a model by accident.
Binary values travel as standard base64. Every string and list has a bound.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from .keystore import MAX_MESSAGE_BYTES, MAX_VERSION, KeyInfo, SignItem, VersionInfo
from .names import NAME_PATTERN
from .x509_templates import MAX_DAYS, MAX_SUBJECT_CHARS

MAX_BATCH = 100  # items per sign/verify call; more is a bulk job, split it
MAX_BOOTSTRAP_KEYS = 50  # a bootstrap document describes a handful of keys
_B64_MESSAGE = (MAX_MESSAGE_BYTES + 2) // 3 * 4
_B64_DIGEST = 88  # base64 of a 64-byte digest
_B64_SIGNATURE = 1400  # base64 of an RSA-4096 signature is 684 characters

Name = Field(pattern=NAME_PATTERN, min_length=1, max_length=64)
HashAlgorithm = Literal["sha256", "sha384", "sha512"]
SignatureAlgorithm = Literal["pss", "pkcs1v15"]
KeyTypeName = Literal[
    "ed25519",
    "ecdsa-p256",
    "ecdsa-p384",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "openpgp-rsa-3072",
    "openpgp-ed25519",
    "x509",
]
TemplateName = Literal[
    "root-ca", "intermediate-ca", "code-signing", "secureboot-pk", "secureboot-kek", "secureboot-db", "kmod"
]
AlgorithmName = Literal["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def decode_b64(value: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{what} is not standard base64", subject=what) from None


class KeyCreate(_Strict):
    name: str = Name
    type: KeyTypeName
    template: TemplateName | None = Field(default=None, description="x509 only: the certificate profile")
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS, description="x509 only: CN=...,O=...")
    issuer: str | None = Field(
        default=None, pattern=NAME_PATTERN, max_length=64, description="x509 only: a CA key here; none = self-signed"
    )
    key_algorithm: AlgorithmName | None = Field(default=None, description="x509 only: the certificate's key type")
    days: int = Field(default=3650, ge=1, le=MAX_DAYS)
    uid: str | None = Field(default=None, max_length=256, description="OpenPGP only: 'Name <email>'")


class KeyConfig(_Strict):
    min_sign_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    min_verify_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    deletion_allowed: bool | None = None


class VersionPublic(BaseModel):
    version: int
    key_id: str
    algorithm: str
    created_at: str
    public_key: str = Field(description="PEM SubjectPublicKeyInfo")
    certificate: str | None = Field(default=None, description="PEM X.509 certificate (x509 keys)")
    openpgp_certificate: str | None = Field(default=None, description="ASCII-armored OpenPGP certificate")

    @classmethod
    def of(cls, v: VersionInfo) -> VersionPublic:
        return cls(
            version=v.version,
            key_id=v.key_id,
            algorithm=v.algorithm,
            created_at=v.created_at,
            public_key=v.public_key,
            certificate=v.certificate,
            openpgp_certificate=v.openpgp_certificate,
        )


class KeyPublic(BaseModel):
    name: str
    type: str
    created_at: str
    latest_version: int
    min_sign_version: int
    min_verify_version: int
    deletion_allowed: bool
    params: dict[str, str | int | None]
    versions: list[VersionPublic]

    @classmethod
    def of(cls, k: KeyInfo) -> KeyPublic:
        return cls(
            name=k.name,
            type=k.type,
            created_at=k.created_at,
            latest_version=k.latest_version,
            min_sign_version=k.min_sign_version,
            min_verify_version=k.min_verify_version,
            deletion_allowed=k.deletion_allowed,
            params=k.params,
            versions=[VersionPublic.of(v) for v in k.versions],
        )


class KeyList(BaseModel):
    keys: list[KeyPublic]


class SignInput(_Strict):
    digest: str | None = Field(default=None, max_length=_B64_DIGEST, description="base64 digest (prehashed)")
    message: str | None = Field(default=None, max_length=_B64_MESSAGE, description="base64 message, <= 64 KiB")
    hash_algorithm: HashAlgorithm | None = Field(
        default=None, description="default: SHA-384 for P-384 messages, else SHA-256; for digests, by length"
    )
    signature_algorithm: SignatureAlgorithm = Field(default="pss", description="RSA keys only")
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)

    def to_item(self) -> SignItem:
        return SignItem(
            digest=decode_b64(self.digest, what="digest") if self.digest is not None else None,
            message=decode_b64(self.message, what="message") if self.message is not None else None,
            hash_algorithm=self.hash_algorithm,
            signature_algorithm=self.signature_algorithm,
            version=self.version,
        )


class SignRequest(SignInput):
    batch: list[SignInput] | None = Field(default=None, max_length=MAX_BATCH, description="sign several at once")


class ErrorPublic(BaseModel):
    reason: str
    message: str


class SignaturePublic(BaseModel):
    signature: str | None = None
    key_id: str | None = None
    version: int | None = None
    algorithm: str | None = None
    error: ErrorPublic | None = None


class SignResponse(SignaturePublic):
    batch_results: list[SignaturePublic] | None = None


class VerifyInput(SignInput):
    signature: str = Field(max_length=_B64_SIGNATURE)


class VerifyRequest(_Strict):
    digest: str | None = Field(default=None, max_length=_B64_DIGEST)
    message: str | None = Field(default=None, max_length=_B64_MESSAGE)
    signature: str | None = Field(default=None, max_length=_B64_SIGNATURE)
    hash_algorithm: HashAlgorithm | None = None
    signature_algorithm: SignatureAlgorithm = "pss"
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    batch: list[VerifyInput] | None = Field(default=None, max_length=MAX_BATCH)


class VerdictPublic(BaseModel):
    valid: bool | None = None
    key_id: str | None = None
    version: int | None = None
    error: ErrorPublic | None = None


class VerifyResponse(VerdictPublic):
    batch_results: list[VerdictPublic] | None = None


class OpenPGPSignRequest(_Strict):
    digest: str = Field(max_length=_B64_DIGEST, description="base64 hash of data + signature trailer")
    hash_algorithm: HashAlgorithm = "sha256"
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)


class OpenPGPSignResponse(BaseModel):
    signature: str = Field(description="base64 raw signature value (RSA: the integer; EdDSA: R || S)")
    fingerprint: str
    pubkey_algorithm: int
    key_created: int = Field(description="key creation time, Unix seconds")
    version: int


class BootstrapRequest(_Strict):
    keys: list[KeyCreate] = Field(min_length=1, max_length=MAX_BOOTSTRAP_KEYS)


class BootstrapResponse(BaseModel):
    keys: list[KeyPublic]
    created: list[str]


class AuditEntryPublic(BaseModel):
    seq: int
    time: str
    caller: str
    action: str
    key_name: str | None
    key_version: int | None
    digest: str | None
    result: str
    detail: str | None
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    scope: Literal["page", "full"] = Field(
        description="page: the returned rows, linked to the stored row before them (and to the head when they reach "
        "it); full: the whole chain from row 1 to the head (?verify=full)"
    )
    valid: bool
    from_seq: int | None = Field(default=None, description="first row checked (none: nothing to check)")
    to_seq: int | None = Field(default=None, description="last row checked")
    error: ErrorPublic | None = Field(default=None, description="the first row that does not check")


class AuditPublic(BaseModel):
    entries: list[AuditEntryPublic]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at the end of the log")
    head_seq: int = Field(description="the last row of the chain, by the audit head")
    head_hash: str
    verification: AuditVerification


class ApiKeyCreate(_Strict):
    name: str = Name
    scopes: list[str] = Field(min_length=1, max_length=32)
    expires_at: str | None = Field(default=None, max_length=40, description="ISO time, or a duration like 30d")


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyPublic):
    token: str = Field(description="shown once; the service keeps only its hash")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyPublic]


class Health(BaseModel):
    status: Literal["ok"]
