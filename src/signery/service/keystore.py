"""The service's key store: named, versioned keys sealed at rest; signing and verification; X.509 issuance.

Every function takes the caller's SQLAlchemy session and appends its audit rows to that same transaction, so the key
row, its sealed private key and the audit row commit together or not at all. No function here returns private key
material; the only way out of this module for a private key is a signature.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..errors import PolicyViolationError, Reason, SigneryError, UsageError, VerificationError
from ..keys import (
    ALGORITHMS,
    FileSigner,
    HashName,
    PrivateKey,
    RsaPadding,
    algorithm_name,
    generate_private_key,
    key_id,
    public_key_pem,
    verify_signature,
)
from . import x509_templates
from .apikeys import NotFoundError
from .audit import AuditEvent, append, utc_now
from .envelope import SealedKey, open_private_key, seal_private_key
from .names import check_name
from .settings import MasterKey
from .storage import Database, KeyRow, KeyVersionRow

KeyType = Literal[
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
KEY_TYPES: tuple[str, ...] = (*ALGORITHMS, "openpgp-rsa-3072", "openpgp-ed25519", "x509")
OPENPGP_TYPES = {"openpgp-rsa-3072": "rsa-3072", "openpgp-ed25519": "ed25519"}
MAX_MESSAGE_BYTES = 64 * 1024  # small statements only: large data is hashed by the client, digests travel
MAX_VERSION = 1_000_000  # far beyond any rotation schedule; keeps integers inside every database's INTEGER
MAX_CACHED_SIGNERS = 1024  # unsealed keys kept in memory per process; RSA key loading costs milliseconds
KEY_CACHE_SECONDS = 1.0  # changes made through another server process reach this one within this time
MAX_UID_CHARS = 256  # an OpenPGP user id is a name and an address
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


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

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.type not in KEY_TYPES:
            raise UsageError(f"unknown key type {self.type!r}; choose one of {', '.join(KEY_TYPES)}", subject=self.type)
        if self.type == "x509":
            if self.template is None or self.subject is None:
                raise UsageError("an x509 key needs a template and a subject", subject=self.name)
            x509_templates.check_template(self.template)
            x509_templates.parse_subject(self.subject)
            if self.issuer is not None:
                check_name(self.issuer, what="issuer")
            if self.key_algorithm is not None and self.key_algorithm not in ALGORITHMS:
                raise UsageError(f"unknown key algorithm {self.key_algorithm!r}", subject=self.key_algorithm)
            if not 1 <= self.days <= x509_templates.MAX_DAYS:
                raise UsageError(f"days must be between 1 and {x509_templates.MAX_DAYS}", subject="days")
        elif any(v is not None for v in (self.template, self.subject, self.issuer, self.key_algorithm)):
            raise UsageError("template, subject, issuer and key_algorithm are for x509 keys only", subject=self.name)
        if self.uid is not None:
            if self.type not in OPENPGP_TYPES:
                raise UsageError("uid is for OpenPGP keys only", subject=self.name)
            if not self.uid or len(self.uid) > MAX_UID_CHARS or any(ord(c) < 32 for c in self.uid):
                raise UsageError(f"uid must be 1 to {MAX_UID_CHARS} printable characters", subject=self.name)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.type == "x509":
            out = {
                "template": self.template,
                "subject": self.subject,
                "issuer": self.issuer,
                "key_algorithm": self.key_algorithm or x509_templates.default_algorithm(self.template or ""),
                "days": self.days,
            }
        elif self.type in OPENPGP_TYPES:
            out = {"uid": self.uid or f"{self.name} <{self.name}@signery.invalid>"}
        return out

    def same_as(self, row: KeyRow) -> bool:
        """For idempotent bootstrap: does an existing key already answer this spec?"""
        if row.type != self.type:
            return False
        stored = json.loads(row.params)
        wanted = self.params()
        return all(stored.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True)
class VersionInfo:
    version: int
    key_id: str
    algorithm: str
    created_at: str
    public_key: str
    certificate: str | None = None
    openpgp_certificate: str | None = None


@dataclass(frozen=True)
class KeyInfo:
    name: str
    type: str
    created_at: str
    latest_version: int
    min_sign_version: int
    min_verify_version: int
    deletion_allowed: bool
    params: dict[str, Any]
    versions: list[VersionInfo] = field(default_factory=list)


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
            by_size: dict[int, HashName] = {32: "sha256", 48: "sha384", 64: "sha512"}
            if len(self.digest) not in by_size:
                raise UsageError(f"a digest of {len(self.digest)} bytes is not SHA-256, SHA-384 or SHA-512")
            object.__setattr__(self, "hash_algorithm", by_size[len(self.digest)])
        if self.hash_algorithm is not None and self.hash_algorithm not in _DIGEST_SIZES:
            raise UsageError(f"unsupported hash algorithm {self.hash_algorithm!r}", subject=self.hash_algorithm)
        if self.signature_algorithm not in ("pss", "pkcs1v15"):
            raise UsageError(f"unsupported signature algorithm {self.signature_algorithm!r}")
        size = _DIGEST_SIZES[self.hash_algorithm or "sha256"]
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _version_info(row: KeyVersionRow) -> VersionInfo:
    return VersionInfo(
        version=row.version,
        key_id=row.key_id,
        algorithm=row.algorithm,
        created_at=row.created_at,
        public_key=row.public_key_pem,
        certificate=row.certificate_pem,
        openpgp_certificate=row.openpgp_certificate,
    )


class KeyStore:
    """Keys of one database, unsealed with one master key. Thread-safe: it holds only an unsealed-key cache."""

    def __init__(self, master: MasterKey) -> None:
        self._master = master
        self._signers: OrderedDict[tuple[str, int, str], tuple[PrivateKey, FileSigner]] = OrderedDict()
        self._meta: dict[str, KeyMeta] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyStore(master={self._master!r})"

    # ---- reading -------------------------------------------------------------------------------------------------

    def _key_row(self, session: Session, name: str, *, lock: bool = False) -> KeyRow:
        check_name(name)
        stmt = select(KeyRow).where(KeyRow.name == name)
        row = session.scalar(stmt.with_for_update() if lock else stmt)
        if row is None:
            raise NotFoundError(f"no key named {name}", reason=Reason.UNKNOWN_KEY, subject=name)
        return row

    def _versions(self, session: Session, name: str) -> list[KeyVersionRow]:
        stmt = select(KeyVersionRow).where(KeyVersionRow.name == name).order_by(KeyVersionRow.version)
        return list(session.scalars(stmt))

    def _info(self, session: Session, row: KeyRow, *, with_versions: bool = True) -> KeyInfo:
        versions = [_version_info(v) for v in self._versions(session, row.name)] if with_versions else []
        return KeyInfo(
            name=row.name,
            type=row.type,
            created_at=row.created_at,
            latest_version=row.latest_version,
            min_sign_version=row.min_sign_version,
            min_verify_version=row.min_verify_version,
            deletion_allowed=row.deletion_allowed,
            params=json.loads(row.params),
            versions=versions,
        )

    def get(self, session: Session, name: str) -> KeyInfo:
        return self._info(session, self._key_row(session, name))

    def list_keys(self, session: Session, *, limit: int = 1000, after: str | None = None) -> list[KeyInfo]:
        stmt = select(KeyRow).order_by(KeyRow.name).limit(limit)
        if after is not None:
            stmt = stmt.where(KeyRow.name > after)
        return [self._info(session, r, with_versions=False) for r in session.scalars(stmt)]

    # ---- creating ------------------------------------------------------------------------------------------------

    @staticmethod
    def algorithm_of(key_type: str, params: dict[str, Any]) -> str:
        if key_type == "x509":
            return str(params["key_algorithm"])
        return OPENPGP_TYPES.get(key_type, key_type)

    def generate_for(self, spec: KeySpec) -> PrivateKey:
        """Make the private key for ``spec`` before any transaction: RSA generation takes up to seconds, and no
        database lock should be held meanwhile."""
        return generate_private_key(self.algorithm_of(spec.type, spec.params()))

    def generate_for_rotation(self, db: Database, name: str) -> PrivateKey:
        with db.read_session() as session:
            row = self._key_row(session, name)
            algorithm = self.algorithm_of(row.type, json.loads(row.params))
        return generate_private_key(algorithm)

    def create(self, session: Session, spec: KeySpec, *, caller: str, private: PrivateKey | None = None) -> KeyInfo:
        if session.get(KeyRow, spec.name) is not None:
            raise ConflictError(f"a key named {spec.name} exists", subject=spec.name)
        now = utc_now()
        row = KeyRow(
            name=spec.name,
            type=spec.type,
            created_at=now,
            latest_version=1,
            min_sign_version=1,
            min_verify_version=1,
            deletion_allowed=False,
            params=json.dumps(spec.params(), sort_keys=True),
        )
        session.add(row)
        session.flush()
        version = self._new_version(session, row, 1, caller=caller, private=private)
        append(
            session,
            [
                AuditEvent(
                    caller=caller,
                    action="key.create",
                    result="ok",
                    key_name=spec.name,
                    key_version=1,
                    detail=f"{spec.type} {version.key_id}",
                )
            ],
        )
        return self._info(session, row)

    def rotate(self, session: Session, name: str, *, caller: str, private: PrivateKey | None = None) -> KeyInfo:
        row = self._key_row(session, name, lock=True)
        if row.latest_version >= MAX_VERSION:
            raise UsageError(f"key {name} has reached {MAX_VERSION} versions", subject=name)
        row.latest_version += 1
        version = self._new_version(session, row, row.latest_version, caller=caller, private=private)
        append(
            session,
            [
                AuditEvent(
                    caller=caller,
                    action="key.rotate",
                    result="ok",
                    key_name=name,
                    key_version=row.latest_version,
                    detail=version.key_id,
                )
            ],
        )
        return self._info(session, row)

    def _new_version(
        self, session: Session, row: KeyRow, version: int, *, caller: str, private: PrivateKey | None
    ) -> KeyVersionRow:
        params = json.loads(row.params)
        algorithm = self.algorithm_of(row.type, params)
        if private is None or algorithm_name(private.public_key()) != algorithm:
            private = generate_private_key(algorithm)
        public = private.public_key()
        kid = key_id(public)
        certificate_pem: str | None = None
        openpgp_cert: str | None = None
        openpgp_created: int | None = None
        now = dt.datetime.now(dt.UTC)
        if row.type == "x509":
            certificate_pem = self._issue(session, row, params, private, now=now, caller=caller)
        elif row.type in OPENPGP_TYPES:
            from .. import openpgp

            openpgp_created = int(now.timestamp())
            created = dt.datetime.fromtimestamp(openpgp_created, dt.UTC)
            assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
            openpgp_cert = openpgp.certificate_from_private_key(private, uid=params["uid"], created=created)
            kid = openpgp.signer_from_private_key(private, created=created).fingerprint
        sealed = seal_private_key(private, master=self._master, name=row.name, version=version, key_id=kid)
        vrow = KeyVersionRow(
            name=row.name,
            version=version,
            key_id=kid,
            algorithm=algorithm_name(public),
            created_at=utc_now(),
            public_key_pem=public_key_pem(public).decode(),
            certificate_pem=certificate_pem,
            openpgp_certificate=openpgp_cert,
            openpgp_created=openpgp_created,
            wrapped_data_key=sealed.wrapped_data_key,
            encrypted_private_key=sealed.ciphertext,
            master_key_id=sealed.master_key_id,
        )
        session.add(vrow)
        session.flush()
        return vrow

    def _issue(
        self,
        session: Session,
        row: KeyRow,
        params: dict[str, Any],
        private: PrivateKey,
        *,
        now: dt.datetime,
        caller: str,
    ) -> str:
        template = params["template"]
        subject = x509_templates.parse_subject(params["subject"])
        issuer_name = params.get("issuer")
        issuer_cert: x509.Certificate | None = None
        issuer_key: PrivateKey = private
        if issuer_name is not None and issuer_name != row.name:
            issuer_row = self._key_row(session, issuer_name)
            if issuer_row.type != "x509" or not x509_templates.is_ca(json.loads(issuer_row.params)["template"]):
                raise UsageError(f"issuer {issuer_name} is not an X.509 CA key in this service", subject=issuer_name)
            issuer_version = self._signing_version(session, issuer_row, None)
            assert issuer_version.certificate_pem is not None
            issuer_cert = x509.load_pem_x509_certificate(issuer_version.certificate_pem.encode())
            issuer_key = self._unseal(issuer_version)[0]
            append(
                session,
                [
                    AuditEvent(
                        caller=caller,
                        action="key.issue-certificate",
                        result="ok",
                        key_name=issuer_name,
                        key_version=issuer_version.version,
                        detail=f"for {row.name}",
                    )
                ],
            )
        cert = x509_templates.build_certificate(
            template=template,
            subject=subject,
            public_key=private.public_key(),
            issuer_key=issuer_key,
            issuer_certificate=issuer_cert,
            days=int(params["days"]),
            now=now,
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def bootstrap(
        self,
        session: Session,
        specs: list[KeySpec],
        *,
        caller: str,
        privates: dict[str, PrivateKey] | None = None,
    ) -> tuple[list[KeyInfo], list[str]]:
        """Create every key that does not exist yet; existing keys that match are returned as they are."""
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise UsageError("bootstrap names a key twice")
        infos, created = [], []
        for spec in specs:
            existing = session.get(KeyRow, spec.name)
            if existing is not None:
                if not spec.same_as(existing):
                    raise ConflictError(f"key {spec.name} exists with different settings", subject=spec.name)
                infos.append(self._info(session, existing))
                continue
            infos.append(self.create(session, spec, caller=caller, private=(privates or {}).get(spec.name)))
            created.append(spec.name)
        return infos, created

    # ---- configuring ---------------------------------------------------------------------------------------------

    def configure(
        self,
        session: Session,
        name: str,
        *,
        min_sign_version: int | None = None,
        min_verify_version: int | None = None,
        deletion_allowed: bool | None = None,
        caller: str,
    ) -> KeyInfo:
        row = self._key_row(session, name, lock=True)
        for label, value in (("min_sign_version", min_sign_version), ("min_verify_version", min_verify_version)):
            if value is not None and not 1 <= value <= row.latest_version:
                raise UsageError(f"{label} must be between 1 and {row.latest_version}", subject=name)
        if min_sign_version is not None:
            row.min_sign_version = min_sign_version
        if min_verify_version is not None:
            row.min_verify_version = min_verify_version
        if deletion_allowed is not None:
            row.deletion_allowed = deletion_allowed
        detail = f"min_sign={row.min_sign_version} min_verify={row.min_verify_version} deletion={row.deletion_allowed}"
        append(session, [AuditEvent(caller=caller, action="key.config", result="ok", key_name=name, detail=detail)])
        return self._info(session, row)

    def delete(self, session: Session, name: str, *, caller: str) -> None:
        row = self._key_row(session, name, lock=True)
        if not row.deletion_allowed:
            raise PolicyViolationError(
                f"key {name} may not be deleted", subject=name, hint="set deletion_allowed with POST .../config first"
            )
        session.execute(delete(KeyVersionRow).where(KeyVersionRow.name == name))
        session.delete(row)
        with self._lock:
            for k in [k for k in self._signers if k[0] == name]:
                del self._signers[k]
        append(session, [AuditEvent(caller=caller, action="key.delete", result="ok", key_name=name)])

    # ---- signing -------------------------------------------------------------------------------------------------

    def load_meta(self, db: Database, name: str) -> KeyMeta:
        """Read ``name`` and its versions from the database (and refresh the in-memory copy)."""
        check_name(name)
        with db.read_session() as session:
            row = self._key_row(session, name)
            versions = {v.version: _version_meta(v) for v in self._versions(session, name)}
        meta = KeyMeta(
            name=row.name,
            type=row.type,
            latest_version=row.latest_version,
            min_sign_version=row.min_sign_version,
            min_verify_version=row.min_verify_version,
            versions=versions,
            loaded_at=time.monotonic(),
        )
        with self._lock:
            self._meta[name] = meta
            while len(self._meta) > MAX_CACHED_SIGNERS:
                self._meta.pop(next(iter(self._meta)))
        return meta

    def cached_meta(self, name: str, *, version: int | None = None) -> KeyMeta | None:
        """The in-memory copy of ``name`` if it is fresh (and knows ``version``); else ``None``: call load_meta."""
        with self._lock:
            meta = self._meta.get(name)
        if meta is None or time.monotonic() - meta.loaded_at > KEY_CACHE_SECONDS:
            return None
        if version is not None and version not in meta.versions:
            return None
        return meta

    def forget(self, name: str) -> None:
        with self._lock:
            self._meta.pop(name, None)

    def _signing_version(self, session: Session, row: KeyRow, version: int | None) -> VersionMeta:
        wanted = row.latest_version if version is None else version
        if wanted < row.min_sign_version:
            raise PolicyViolationError(
                f"key {row.name} v{wanted} may no longer sign (minimum v{row.min_sign_version})", subject=row.name
            )
        vrow = session.get(KeyVersionRow, (row.name, wanted))
        if vrow is None:
            raise NotFoundError(f"key {row.name} has no version {wanted}", reason=Reason.UNKNOWN_KEY, subject=row.name)
        return _version_meta(vrow)

    def _unseal(self, v: VersionMeta) -> tuple[PrivateKey, FileSigner]:
        cache_key = (v.name, v.version, v.key_id)
        with self._lock:
            cached = self._signers.get(cache_key)
            if cached is not None:
                self._signers.move_to_end(cache_key)
                return cached
        private = open_private_key(v.sealed, master=self._master, name=v.name, version=v.version, key_id=v.key_id)
        entry = (private, FileSigner(private, name=v.name))
        with self._lock:
            self._signers[cache_key] = entry
            while len(self._signers) > MAX_CACHED_SIGNERS:
                self._signers.popitem(last=False)
        return entry

    def sign(
        self, meta: KeyMeta, items: list[SignItem], *, caller: str
    ) -> tuple[list[Signature | SigneryError], list[AuditEvent]]:
        """Sign each item; a failing item yields its error in place. Returns the results and their audit rows,
        which the caller must make durable before it hands out any signature."""
        name = meta.name
        if meta.type in OPENPGP_TYPES:
            raise UsageError(f"{name} is an OpenPGP key: use POST /v1/keys/{name}/openpgp-sign", subject=name)
        results: list[Signature | SigneryError] = []
        events: list[AuditEvent] = []
        for item in items:
            try:
                v = meta.signing_version(item.version)
                signer = self._unseal(v)[1]
                if item.digest is not None:
                    sig = signer.sign_digest(
                        item.digest, hash_name=item.hash_algorithm or "sha256", rsa_padding=item.signature_algorithm
                    )
                else:
                    assert item.message is not None
                    sig = signer.sign(item.message, hash_name=item.hash_algorithm, rsa_padding=item.signature_algorithm)
            except SigneryError as err:
                results.append(err)
                events.append(
                    AuditEvent(
                        caller=caller,
                        action="sign",
                        result=f"refused:{err.reason.value}",
                        key_name=name,
                        key_version=item.version,
                        digest=item.audit_digest(),
                        detail=err.message,
                    )
                )
                continue
            results.append(Signature(signature=sig, key_id=v.key_id, version=v.version, algorithm=v.algorithm))
            events.append(
                AuditEvent(
                    caller=caller,
                    action="sign",
                    result="ok",
                    key_name=name,
                    key_version=v.version,
                    digest=item.audit_digest(),
                )
            )
        return results, events

    def verify(
        self, meta: KeyMeta, items: list[tuple[SignItem, bytes]], *, caller: str
    ) -> tuple[list[Verdict | SigneryError], list[AuditEvent]]:
        name = meta.name
        if meta.type in OPENPGP_TYPES:
            raise UsageError(f"{name} is an OpenPGP key: verify its signatures with sq or gpg", subject=name)
        versions = {n: v for n, v in meta.versions.items() if n >= meta.min_verify_version}
        results: list[Verdict | SigneryError] = []
        events: list[AuditEvent] = []
        for item, signature in items:
            if item.version is None:
                candidates = sorted(versions.values(), key=lambda v: -v.version)
            elif item.version in versions:
                candidates = [versions[item.version]]
            else:
                err = PolicyViolationError(f"key {name} v{item.version} may not verify", subject=name)
                results.append(err)
                events.append(
                    AuditEvent(
                        caller=caller,
                        action="verify",
                        result=f"refused:{err.reason.value}",
                        key_name=name,
                        key_version=item.version,
                        digest=item.audit_digest(),
                    )
                )
                continue
            verdict = Verdict(valid=False, key_id=None, version=item.version, reason=Reason.BAD_SIGNATURE.value)
            for v in candidates:
                public = self._unseal(v)[1].public_key()
                try:
                    if item.digest is not None:
                        verify_signature(
                            public,
                            signature,
                            item.digest,
                            hash_name=item.hash_algorithm,
                            rsa_padding=item.signature_algorithm,
                            prehashed=True,
                        )
                    else:
                        assert item.message is not None
                        verify_signature(
                            public,
                            signature,
                            item.message,
                            hash_name=item.hash_algorithm,
                            rsa_padding=item.signature_algorithm,
                        )
                except (VerificationError, UsageError):
                    continue
                verdict = Verdict(valid=True, key_id=v.key_id, version=v.version)
                break
            results.append(verdict)
            events.append(
                AuditEvent(
                    caller=caller,
                    action="verify",
                    result="valid" if verdict.valid else "invalid",
                    key_name=name,
                    key_version=verdict.version,
                    digest=item.audit_digest(),
                )
            )
        return results, events

    def openpgp_sign(
        self, meta: KeyMeta, *, digest: bytes, hash_algorithm: str, version: int | None, caller: str
    ) -> tuple[OpenPGPSignature, list[AuditEvent]]:
        """Sign a client-computed OpenPGP hash (of data + signature trailer); the client assembles the packet."""
        name = meta.name
        if meta.type not in OPENPGP_TYPES:
            raise UsageError(f"{name} is not an OpenPGP key", subject=name)
        if hash_algorithm not in _DIGEST_SIZES or len(digest) != _DIGEST_SIZES[hash_algorithm]:
            raise UsageError(f"a {hash_algorithm} digest of the right length is required", subject=hash_algorithm)
        v = meta.signing_version(version)
        from .. import openpgp

        assert v.openpgp_created is not None
        created = dt.datetime.fromtimestamp(v.openpgp_created, dt.UTC)
        private = self._unseal(v)[0]
        assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        pgp = openpgp.signer_from_private_key(private, created=created)
        value = pgp.sign_hash(digest, hash_algorithm=hash_algorithm)
        event = AuditEvent(
            caller=caller,
            action="openpgp-sign",
            result="ok",
            key_name=name,
            key_version=v.version,
            digest=f"{hash_algorithm}:{digest.hex()}",
        )
        result = OpenPGPSignature(
            signature=value,
            fingerprint=pgp.fingerprint,
            pubkey_algorithm=pgp.pubkey_algorithm,
            key_created=v.openpgp_created,
            version=v.version,
        )
        return result, [event]


@dataclass(frozen=True)
class VersionMeta:
    """What signing needs from one key version, detached from any database session."""

    name: str
    version: int
    key_id: str
    algorithm: str
    sealed: SealedKey
    openpgp_created: int | None
    certificate_pem: str | None


@dataclass(frozen=True)
class KeyMeta:
    name: str
    type: str
    latest_version: int
    min_sign_version: int
    min_verify_version: int
    versions: dict[int, VersionMeta]
    loaded_at: float

    def signing_version(self, version: int | None) -> VersionMeta:
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


def _version_meta(row: KeyVersionRow) -> VersionMeta:
    return VersionMeta(
        name=row.name,
        version=row.version,
        key_id=row.key_id,
        algorithm=row.algorithm,
        sealed=SealedKey(
            wrapped_data_key=row.wrapped_data_key,
            ciphertext=row.encrypted_private_key,
            master_key_id=row.master_key_id,
        ),
        openpgp_created=row.openpgp_created,
        certificate_pem=row.certificate_pem,
    )


class ConflictError(UsageError):
    """The thing to create exists already (HTTP 409)."""


__all__ = [
    "KEY_TYPES",
    "ConflictError",
    "KeyInfo",
    "KeySpec",
    "KeyStore",
    "OpenPGPSignature",
    "SignItem",
    "Signature",
    "Verdict",
    "VersionInfo",
]
