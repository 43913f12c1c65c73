"""Wire schemas of the HTTP API: requests (``...Create``, ``...Request``) apart from responses (``...Public``).

Responses are built only from public fields, so no private material can leak through a model by accident.
Binary values travel as standard base64. Every string and list has a bound.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .._internal.names import KEY_NAME_LENGTH, NAME_PATTERN
from ..errors import UsageError
from ..keys import Algorithm, HashName, RsaPadding
from ..x509 import MAX_DAYS, MAX_SUBJECT_CHARS, Template
from .keys.models import MAX_MESSAGE_BYTES, MAX_VERSION, Key, KeySpec, KeyType, KeyVersion, SignItem

MAX_BATCH = 100  # items per sign/verify call; more is a bulk job, split it
MAX_BOOTSTRAP_KEYS = 50  # a bootstrap document describes a handful of keys
_B64_MESSAGE = (MAX_MESSAGE_BYTES + 2) // 3 * 4
_B64_DIGEST = 88  # base64 of a 64-byte digest
_B64_SIGNATURE = 4500  # base64 of an ML-DSA-65 signature (3,309 bytes) is 4,412 characters; RSA-4096 684

Name = Field(pattern=NAME_PATTERN, min_length=1, max_length=KEY_NAME_LENGTH)
HashAlgorithm = HashName
SignatureAlgorithm = RsaPadding
KeyTypeName = KeyType
TemplateName = Template
AlgorithmName = Algorithm


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
        default=None,
        pattern=NAME_PATTERN,
        max_length=KEY_NAME_LENGTH,
        description="x509 only: a CA key here; none = self-signed",
    )
    key_algorithm: AlgorithmName | None = Field(default=None, description="x509 only: the certificate's key type")
    days: int = Field(default=3650, ge=1, le=MAX_DAYS)
    uid: str | None = Field(default=None, max_length=256, description="OpenPGP only: 'Name <email>'")
    storage: Literal["sealed", "pkcs11"] = Field(
        default="sealed",
        description="sealed: in the database under the master key; pkcs11: generated and kept in the server's "
        "PKCS#11 token (plain and OpenPGP keys), the database holding only its public key and a reference",
    )

    def to_spec(self) -> KeySpec:
        return KeySpec(**self.model_dump())


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
    def of(cls, v: KeyVersion) -> VersionPublic:
        return cls(
            version=v.version,
            key_id=v.key_id,
            algorithm=v.algorithm,
            created_at=v.created_at,
            public_key=v.public_key_pem,
            certificate=v.certificate_pem,
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
    storage: str = Field(default="sealed", description="sealed, or pkcs11 (kept in the server's PKCS#11 token)")
    versions: list[VersionPublic]

    @classmethod
    def of(cls, k: Key) -> KeyPublic:
        """The fields declared here, and only those, taken from ``k``."""
        public = {f: getattr(k, f) for f in cls.model_fields if f != "versions"}
        return cls(**public, versions=[VersionPublic.of(v) for v in k.versions.values()])


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


class VerifyRequest(SignInput):
    signature: str | None = Field(default=None, max_length=_B64_SIGNATURE)
    batch: list[VerifyInput] | None = Field(default=None, max_length=MAX_BATCH, description="verify several at once")

    def single(self) -> VerifyInput:
        """The one input of a request without a batch."""
        if self.signature is None:
            raise UsageError("signature is required")
        return VerifyInput(**self.model_dump(exclude={"batch"}))


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
