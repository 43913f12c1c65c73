"""A key's life: create (with its X.509 certificate or OpenPGP certificate), rotate, configure, delete, bootstrap.

Every function takes the caller's SQLAlchemy session and appends its audit rows to that same transaction, so the key
row, its sealed private key and the audit row commit together or not at all. Nothing here returns private key
material. Private keys are generated before the transaction (:func:`generate_for`): RSA generation takes up to
seconds, and no database lock should be held meanwhile.

Keys created with ``storage="pkcs11"`` are generated inside the server's PKCS#11 token instead (:mod:`.token`),
once the transaction knows the name is free (so no object is made for a request that fails on a name taken): their
rows hold the public key, the key id and the token object's reference, and no private material at all.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from ... import x509
from ..._internal.names import check_name
from ...errors import ConflictError, NotFoundError, PolicyViolationError, Reason, UsageError
from ...keys import PrivateKey, algorithm_name, generate_private_key, key_id, public_key_pem
from ..audit import AuditEvent, append, utc_now
from ..envelope import seal_private_key
from ..settings import MasterKey
from ..storage import Database, KeyRow, KeyVersionRow
from . import token as token_keys
from .models import MAX_VERSION, OPENPGP_TYPES, TOKEN_KEY_TYPES, Key, KeySpec, algorithm_of


def _row(session: Session, name: str, *, lock: bool = False) -> KeyRow:
    check_name(name)
    stmt = select(KeyRow).where(KeyRow.name == name)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFoundError(f"no key named {name}", reason=Reason.UNKNOWN_KEY, subject=name)
    return row


def _key(session: Session, row: KeyRow) -> Key:
    stmt = select(KeyVersionRow).where(KeyVersionRow.name == row.name)
    return Key.of(row, list(session.scalars(stmt)))


def _audit(session: Session, caller: str, action: str, name: str, *, version: int | None = None, detail: str) -> None:
    event = AuditEvent(caller=caller, action=action, result="ok", key_name=name, key_version=version, detail=detail)
    append(session, [event])


def get(session: Session, name: str) -> Key:
    """``name`` with all its versions."""
    return _key(session, _row(session, name))


def list_keys(session: Session, *, limit: int = 1000, after: str | None = None) -> list[Key]:
    """Keys by name (without their versions), ``limit`` at a time, those after ``after``."""
    stmt = select(KeyRow).order_by(KeyRow.name).limit(limit)
    if after is not None:
        stmt = stmt.where(KeyRow.name > after)
    return [Key.of(r) for r in session.scalars(stmt)]


def _placeholder() -> PrivateKey:
    """What :func:`generate_for` returns for a token-backed key: a fresh Ed25519 key (microseconds) that
    :func:`create` and :func:`rotate` do not use, since the token generates the key itself."""
    return ed25519.Ed25519PrivateKey.generate()


def generate_for(spec: KeySpec) -> PrivateKey:
    """The private key for ``spec``, made before any transaction (for ``storage="pkcs11"``, an unused placeholder:
    the token generates the key, in :func:`create`)."""
    if spec.storage == "pkcs11":
        return _placeholder()
    return generate_private_key(algorithm_of(spec.type, spec.params()))


def generate_for_rotation(db: Database, name: str) -> PrivateKey:
    """The private key for the next version of ``name``, made before any transaction (for a token-backed key, an
    unused placeholder: the token generates the key, in :func:`rotate`)."""
    with db.read_session() as session:
        row = _row(session, name)
        algorithm = algorithm_of(row.type, json.loads(row.params))
        storage = row.storage
    if storage == "pkcs11":
        return _placeholder()
    return generate_private_key(algorithm)


def create(
    session: Session, spec: KeySpec, *, master: MasterKey, caller: str, private: PrivateKey | None = None
) -> Key:
    if session.get(KeyRow, spec.name) is not None:
        raise ConflictError(f"a key named {spec.name} exists", subject=spec.name)
    row = KeyRow(
        name=spec.name,
        type=spec.type,
        created_at=utc_now(),
        latest_version=1,
        min_sign_version=1,
        min_verify_version=1,
        deletion_allowed=False,
        params=json.dumps(spec.params(), sort_keys=True),
        storage=spec.storage,
    )
    session.add(row)
    session.flush()
    version = _new_version(session, row, 1, master=master, caller=caller, private=private)
    _audit(session, caller, "key.create", spec.name, version=1, detail=f"{spec.type} {version.key_id}{_where(version)}")
    return _key(session, row)


def _where(version: KeyVersionRow) -> str:
    return "" if version.token_object is None else f" in {version.token_object}"


def rotate(session: Session, name: str, *, master: MasterKey, caller: str, private: PrivateKey | None = None) -> Key:
    row = _row(session, name, lock=True)
    if row.latest_version >= MAX_VERSION:
        raise UsageError(f"key {name} has reached {MAX_VERSION} versions", subject=name)
    row.latest_version += 1
    version = _new_version(session, row, row.latest_version, master=master, caller=caller, private=private)
    _audit(session, caller, "key.rotate", name, version=row.latest_version, detail=version.key_id + _where(version))
    return _key(session, row)


def configure(
    session: Session,
    name: str,
    *,
    min_sign_version: int | None = None,
    min_verify_version: int | None = None,
    deletion_allowed: bool | None = None,
    caller: str,
) -> Key:
    row = _row(session, name, lock=True)
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
    _audit(session, caller, "key.config", name, detail=detail)
    return _key(session, row)


def delete(session: Session, name: str, *, caller: str) -> None:
    """Delete ``name`` and every version; the caller then makes each process forget it (:class:`.cache.KeyCache`)."""
    row = _row(session, name, lock=True)
    if not row.deletion_allowed:
        raise PolicyViolationError(
            f"key {name} may not be deleted", subject=name, hint="set deletion_allowed with POST .../config first"
        )
    session.execute(sql_delete(KeyVersionRow).where(KeyVersionRow.name == name))
    session.delete(row)
    append(session, [AuditEvent(caller=caller, action="key.delete", result="ok", key_name=name)])


def bootstrap(
    session: Session,
    specs: list[KeySpec],
    *,
    master: MasterKey,
    caller: str,
    privates: Mapping[str, PrivateKey] | None = None,
) -> tuple[list[Key], list[str]]:
    """Create every key that does not exist yet; existing keys that match are returned as they are."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError("bootstrap names a key twice")
    keys, created = [], []
    for spec in specs:
        existing = session.get(KeyRow, spec.name)
        if existing is not None:
            key = _key(session, existing)
            if not spec.same_as(key):
                raise ConflictError(f"key {spec.name} exists with different settings", subject=spec.name)
            keys.append(key)
            continue
        keys.append(create(session, spec, master=master, caller=caller, private=(privates or {}).get(spec.name)))
        created.append(spec.name)
    return keys, created


def create_imported(
    session: Session,
    *,
    name: str,
    key_type: str,
    params: dict[str, Any],
    private: PrivateKey,
    master: MasterKey,
    caller: str,
    certificate_pem: str | None = None,
    openpgp_certificate: str | None = None,
    openpgp_created: int | None = None,
    version_key_id: str | None = None,
) -> Key:
    """Create ``name`` (version 1) from an existing private key and its existing certificate, sealed as every key.

    For keys brought from another signing service (``service/balena_import.py``): nothing is generated or
    re-issued, so the certificate, OpenPGP fingerprint and public key stay what clients already trust.
    """
    check_name(name)
    if session.get(KeyRow, name) is not None:
        raise ConflictError(f"a key named {name} exists", subject=name)
    public = private.public_key()
    kid = version_key_id or key_id(public)
    row = KeyRow(
        name=name,
        type=key_type,
        created_at=utc_now(),
        latest_version=1,
        min_sign_version=1,
        min_verify_version=1,
        deletion_allowed=False,
        params=json.dumps(params, sort_keys=True),
    )
    session.add(row)
    session.flush()
    session.add(
        _sealed_version(
            private,
            name=name,
            version=1,
            key_id=kid,
            master=master,
            certificate_pem=certificate_pem,
            openpgp_certificate=openpgp_certificate,
            openpgp_created=openpgp_created,
        )
    )
    session.flush()
    _audit(session, caller, "key.import", name, version=1, detail=f"{key_type} {kid}")
    return _key(session, row)


def _new_version(
    session: Session, row: KeyRow, version: int, *, master: MasterKey, caller: str, private: PrivateKey | None
) -> KeyVersionRow:
    params = json.loads(row.params)
    algorithm = algorithm_of(row.type, params)
    if row.storage == "pkcs11":
        vrow = _token_version(row, version, params, algorithm, master=master)
        session.add(vrow)
        session.flush()
        return vrow
    if private is None or algorithm_name(private.public_key()) != algorithm:
        private = generate_private_key(algorithm)
    public = private.public_key()
    kid = key_id(public)
    certificate_pem: str | None = None
    openpgp_cert: str | None = None
    openpgp_created: int | None = None
    now = dt.datetime.now(dt.UTC)
    if row.type == "x509":
        certificate_pem = _issue(session, row, params, private, master=master, now=now, caller=caller)
    elif row.type in OPENPGP_TYPES:
        from ... import openpgp

        openpgp_created = int(now.timestamp())
        created = dt.datetime.fromtimestamp(openpgp_created, dt.UTC)
        assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        openpgp_cert = openpgp.certificate_from_private_key(private, uid=params["uid"], created=created)
        kid = openpgp.signer_from_private_key(private, created=created).fingerprint
    vrow = _sealed_version(
        private,
        name=row.name,
        version=version,
        key_id=kid,
        master=master,
        certificate_pem=certificate_pem,
        openpgp_certificate=openpgp_cert,
        openpgp_created=openpgp_created,
    )
    session.add(vrow)
    session.flush()
    return vrow


def _token_version(
    row: KeyRow, version: int, params: dict[str, Any], algorithm: str, *, master: MasterKey
) -> KeyVersionRow:
    """The row of a new version generated inside the token: public key, key id, the object's reference; no secret."""
    if row.type not in TOKEN_KEY_TYPES:
        raise UsageError(f"{row.type} keys cannot be kept in the PKCS#11 token", subject=row.name)
    token = token_keys.token_of(master, name=row.name)
    ref = token_keys.new_reference(token, name=row.name, version=version)
    reference = token_keys.reference_text(ref)
    public = token_keys.generate(master, ref, algorithm, name=row.name, version=version)
    pem = public_key_pem(public).decode()
    kid = key_id(public)
    openpgp_cert: str | None = None
    openpgp_created: int | None = None
    if row.type in OPENPGP_TYPES:
        from ... import openpgp

        openpgp_created = int(dt.datetime.now(dt.UTC).timestamp())
        created = dt.datetime.fromtimestamp(openpgp_created, dt.UTC)
        with token_keys.TokenSigner(token, reference, name=row.name, version=version, public_pem=pem) as signer:
            openpgp_cert = openpgp.certificate_for(signer, uid=params["uid"], created=created)
            kid = openpgp.OpenPGPSigner(signer, created=created).fingerprint
    return KeyVersionRow(
        name=row.name,
        version=version,
        key_id=kid,
        algorithm=algorithm_name(public),
        created_at=utc_now(),
        public_key_pem=pem,
        certificate_pem=None,
        openpgp_certificate=openpgp_cert,
        openpgp_created=openpgp_created,
        wrapped_data_key=None,
        encrypted_private_key=None,
        master_key_id=None,
        token_object=reference,
    )


def _sealed_version(
    private: PrivateKey,
    *,
    name: str,
    version: int,
    key_id: str,
    master: MasterKey,
    certificate_pem: str | None,
    openpgp_certificate: str | None,
    openpgp_created: int | None,
) -> KeyVersionRow:
    """The row of a new key version: its public half and certificates in the clear, ``private`` sealed."""
    public = private.public_key()
    sealed = seal_private_key(private, master=master, name=name, version=version, key_id=key_id)
    return KeyVersionRow(
        name=name,
        version=version,
        key_id=key_id,
        algorithm=algorithm_name(public),
        created_at=utc_now(),
        public_key_pem=public_key_pem(public).decode(),
        certificate_pem=certificate_pem,
        openpgp_certificate=openpgp_certificate,
        openpgp_created=openpgp_created,
        wrapped_data_key=sealed.wrapped_data_key,
        encrypted_private_key=sealed.ciphertext,
        master_key_id=sealed.master_key_id,
    )


def _issue(
    session: Session,
    row: KeyRow,
    params: dict[str, Any],
    private: PrivateKey,
    *,
    master: MasterKey,
    now: dt.datetime,
    caller: str,
) -> str:
    """The certificate of a new x509 key version: self-signed, or issued by the CA key ``params["issuer"]``."""
    issuer_name = params.get("issuer")
    issuer_cert: pyca_x509.Certificate | None = None
    issuer_key: PrivateKey = private
    if issuer_name is not None and issuer_name != row.name:
        issuer = get(session, issuer_name)
        if issuer.type != "x509" or not x509.is_ca(issuer.params["template"]):
            raise UsageError(f"issuer {issuer_name} is not an X.509 CA key in this service", subject=issuer_name)
        issuer_version = issuer.signing_version(None)
        assert issuer_version.certificate_pem is not None
        issuer_cert = pyca_x509.load_pem_x509_certificate(issuer_version.certificate_pem.encode())
        issuer_key = issuer_version.unseal(master)
        _audit(
            session,
            caller,
            "key.issue-certificate",
            issuer_name,
            version=issuer_version.version,
            detail=f"for {row.name}",
        )
    cert = x509.build_certificate(
        template=params["template"],
        subject=x509.parse_subject(params["subject"]),
        public_key=private.public_key(),
        issuer_key=issuer_key,
        issuer_certificate=issuer_cert,
        days=int(params["days"]),
        now=now,
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


__all__ = [
    "bootstrap",
    "configure",
    "create",
    "create_imported",
    "delete",
    "generate_for",
    "generate_for_rotation",
    "get",
    "list_keys",
    "rotate",
]
