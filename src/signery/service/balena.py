"""balenaSign's operations on signery's key store: what ``/balena/...`` does, short of HTTP.

Keys are signery keys (sealed in the database, versioned, audited); balenaSign's ids reach them through
:mod:`.balena_store`'s aliases. Every artifact is made by a signery format module through the key's
:class:`~signery.keys.Signer`: Authenticode (:mod:`signery.formats.authenticode`), module signatures
(:mod:`signery.formats.kmod`), ESLs and ``.auth`` (:mod:`signery.formats.uefi`), raw RSA
(:mod:`signery.formats.rawrsa`), the Raspberry Pi digest file (:mod:`signery.formats.rpi_eeprom`) and OpenPGP
detached signatures (:mod:`signery.formats.openpgp`).

Functions here that take a ``session`` are blocking and run inside the caller's transaction, so the key rows, the
aliases, the stored ``.auth`` files and the audit rows commit together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from ..errors import ConflictError, UsageError
from ..keys import FileSigner, PrivateKey, spki_der
from .audit import AuditEvent, append
from .balena_store import StoredAuth, add, cert_list, gpg_aliases, key_name_for, lookup, store_auth
from .keys import lifecycle
from .keys.cache import KeyCache
from .keys.models import OPENPGP_TYPES, Key, KeySpec, KeyVersion
from .settings import MasterKey

TEMPLATES = {"pk": "secureboot-pk", "kek": "secureboot-kek", "db": "secureboot-db", "kmod": "kmod"}
DEFAULT_DAYS = 7305  # balenaSign's default: 20 years
BOOTSTRAP_GPG = "balena-gpg-bootstrap"
BOOTSTRAP_RSA = "balena-rsa-bootstrap"
AUTH_VARIABLES = {"pk": "PK", "kek": "KEK", "db": "db"}
UNSUPPORTED = "NXP HAB/AHAB PKI trees are not supported by signery; nothing was created for this entry"


def rsa_id(public: Any) -> str:
    """The opaque id of an RSA key made here: 32 hex digits (balenaSign's shape), from the public key only."""
    return hashlib.sha256(spki_der(public)).hexdigest()[:32]


def fingerprint_text(fingerprint: str) -> str:
    """A fingerprint as gpg prints it (and balenaSign returns it): upper-case hex."""
    return fingerprint.upper()


def signing_version(key: Key) -> KeyVersion:
    return key.signing_version(None)


_CERTS: dict[tuple[str, int, str], tuple[str, pyca_x509.Certificate]] = {}
_CERTS_LOCK = threading.Lock()


def x509_certificate(key: Key, alias: str) -> tuple[KeyVersion, pyca_x509.Certificate]:
    """The signing version of an x509 key and its certificate (parsed once per process and key version); a usage
    error for any other key."""
    v = signing_version(key)
    pem = v.certificate_pem
    if key.type != "x509" or pem is None:
        raise UsageError(f"{alias} is not an X.509 certificate key", subject=alias)
    cache_key = (v.name, v.version, v.key_id)
    with _CERTS_LOCK:
        hit = _CERTS.get(cache_key)
    if hit is not None and hit[0] == pem:
        return v, hit[1]
    cert = pyca_x509.load_pem_x509_certificate(pem.encode())
    with _CERTS_LOCK:
        if len(_CERTS) > 1024:
            _CERTS.clear()
        _CERTS[cache_key] = (pem, cert)
    return v, cert


def rsa_signer(cache: KeyCache, key: Key, alias: str) -> tuple[KeyVersion, FileSigner]:
    v = signing_version(key)
    signer = cache.signer(v)[1]
    if not isinstance(signer.public_key(), rsa.RSAPublicKey):
        raise UsageError(f"{alias} is not an RSA key", subject=alias)
    return v, signer


_BOUND: dict[tuple[str, int, str], Any] = {}
_BOUND_LOCK = threading.Lock()


def openpgp_signer(cache: KeyCache, key: Key, alias: str) -> tuple[KeyVersion, Any]:
    """The OpenPGP signer of an OpenPGP key, bound once per process to its certificate (primary key or subkey)."""
    from ..openpgp import bind_signer

    v = signing_version(key)
    if key.type not in OPENPGP_TYPES or v.openpgp_certificate is None:
        raise UsageError(f"{alias} is not an OpenPGP key", subject=alias)
    file_signer = cache.signer(v)[1]
    if not isinstance(file_signer.public_key(), rsa.RSAPublicKey):
        raise UsageError(f"{alias} is not an RSA key; GRUB checks RSA and DSA signatures only", subject=alias)
    cache_key = (v.name, v.version, v.key_id)
    with _BOUND_LOCK:
        hit = _BOUND.get(cache_key)
    if hit is not None and hit[0] is file_signer:
        return v, hit[1]
    bound = bind_signer(file_signer, certificate=v.openpgp_certificate, source=f"{key.name} v{v.version}")
    with _BOUND_LOCK:
        if len(_BOUND) > 1024:
            _BOUND.clear()
        _BOUND[cache_key] = (file_signer, bound)
    return v, bound


# ---- artifacts ----------------------------------------------------------------------------------------------------


def sign_efi(signer: FileSigner, certificate: pyca_x509.Certificate, payload: Path, output: Path) -> Path:
    """sbsign's output: the PE with an Authenticode signature appended (:mod:`signery.formats.authenticode`)."""
    from ..formats import authenticode

    pem = certificate.public_bytes(serialization.Encoding.PEM)
    return authenticode.sign(payload, signer, certificate=pem, output=output)


def sign_kmod(signer: FileSigner, certificate: pyca_x509.Certificate, payload: Path, sha512: bytes) -> Path:
    """sign-file's output, in place: ``payload`` with the module signature appended (SHA-512, as balenaOS builds).

    The module was hashed while it streamed in (``sha512``), so it is never read into memory; the CMS and the
    trailer come from :mod:`signery.formats.kmod` (:func:`~signery.formats.kmod.signed_module` of nothing is
    exactly what sign-file appends).
    """
    from ..formats import _cms, kmod

    if kmod.FORMAT.detect(payload):
        raise UsageError("the module is signed already; send it unsigned", subject="payload")
    sd = _cms.build_signed_data(
        signer, certificate, content_digest=sha512, hash_name="sha512", certificates=[], digest_null_parameters=False
    )
    with payload.open("ab") as fh:
        fh.write(kmod.signed_module(b"", _cms.content_info(sd)))
    return payload


def sign_gpg(signer: Any, payload: Path, output: Path) -> bytes:
    """A binary detached OpenPGP v4 signature, issuer key id unhashed as GRUB needs (formats.openpgp)."""
    from ..formats import openpgp

    openpgp.sign(payload, signer, output=output, hash_algorithm="sha256")
    return output.read_bytes()


def sign_gpg_bytes(signer: Any, payload: bytes) -> bytes:
    """:func:`sign_gpg` of a payload held in memory (a small one, answered by the fast path): the same packet, a
    binary (0x00) signature with SHA-256, made by the same :func:`signery.openpgp.make_signature`."""
    from ..openpgp._packets import SIG_BINARY
    from ..openpgp._signatures import make_signature

    return make_signature(signer, sig_type=SIG_BINARY, created=now_utc(), data_hash=hashlib.sha256(payload))


def sign_rsa(signer: FileSigner, sha256: bytes, *, now: float) -> bytes:
    """The Raspberry Pi digest file (``rsa2048:`` line) for an image whose SHA-256 is ``sha256``."""
    from ..formats import rpi_eeprom

    return rpi_eeprom.sign_digest(sha256, signer, timestamp=int(now))


def sign_raw(signer: FileSigner, digest: bytes) -> bytes:
    """PKCS#1 v1.5 without a DigestInfo over a SHA-256 digest, as ``openssl pkeyutl -sign`` (formats.rawrsa)."""
    from ..formats import rawrsa

    return rawrsa.sign_digest_raw(digest, signer)


def make_auth(
    variable: str, esl: bytes, signer: FileSigner, certificate: pyca_x509.Certificate, *, append: bool
) -> bytes:
    from ..formats import uefi

    return uefi.make_auth(variable, esl, signer, certificate, append=append)


# ---- keys and lists -----------------------------------------------------------------------------------------------


def _alias_event(caller: str, key_name: str, kind: str, alias: str, role: str | None) -> AuditEvent:
    detail = f"{kind} {alias}" + (f" role {role}" if role else "")
    return AuditEvent(caller=caller, action="balena.alias", result="ok", key_name=key_name, detail=detail)


def alias_key(
    session: Session, key: Key, kind: str, caller: str, *, alias: str | None = None, role: str | None = None
) -> str:
    """Point balena's id(s) for ``key`` at it; returns the id balenaSign answers with."""
    v = signing_version(key)
    if kind == "gpg":
        ids = gpg_aliases(v.key_id)
    elif kind == "rsa":
        ids = [alias or rsa_id(v.public_key)]
    else:
        assert alias is not None
        ids = [alias]
    for i in ids:
        add(session, kind, i, key.name, role=role)
    append(session, [_alias_event(caller, key.name, kind, ids[0], role)])
    return fingerprint_text(ids[0]) if kind == "gpg" else ids[0]


def cert_spec(cert_id: str, *, subject: str, key_length: int | None, days: int | None, role: str = "kmod") -> KeySpec:
    if key_length not in (None, 2048, 3072, 4096):
        raise UsageError("key_length must be 2048, 3072 or 4096", subject="key_length")
    return KeySpec(
        name=key_name_for("x509", cert_id),
        type="x509",
        template=TEMPLATES[role],
        subject=subject.rstrip("/") if subject.count("/") > 1 else subject,
        key_algorithm=f"rsa-{key_length or 2048}",
        days=days or DEFAULT_DAYS,
    )


def gpg_uid(name_real: str, name_email: str, name_comment: str | None) -> str:
    comment = f" ({name_comment})" if name_comment else ""
    return f"{name_real}{comment} <{name_email}>"


def new_gpg_name() -> str:
    return f"balena-gpg-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class ListMaterial:
    ids: list[str]
    certificates: list[pyca_x509.Certificate]


def list_certificates(session: Session, ids: list[str]) -> ListMaterial:
    """The certificates of a list of certificate ids, in the list's (sorted) order; 404 for an unknown one."""
    certs = []
    for cert_id in ids:
        a = lookup(session, "x509", cert_id)
        key = lifecycle.get(session, a.key_name)
        certs.append(x509_certificate(key, cert_id)[1])
    return ListMaterial(ids, certs)


def make_list_auth(
    session: Session,
    cache: KeyCache,
    variable_key: str,
    ids: list[str],
    *,
    signer_id: str,
    append_mode: bool,
    caller: str,
) -> tuple[StoredAuth, bool]:
    """The stored ``.auth`` of ``ids`` for PK, KEK or db, made now (signed by ``signer_id``) unless it exists.

    Returns it and whether it was made now. A stored one made by another signer is a conflict (409, as
    balenaSign answers a second signing); the same request again yields the stored one.
    """
    from ..formats import uefi

    variable = AUTH_VARIABLES[variable_key]
    from .balena_store import stored_auth

    existing = stored_auth(session, variable, ids)
    if existing is not None:
        if existing.signer != signer_id:
            raise ConflictError(
                f"{variable} for {','.join(ids)} is signed already, by {existing.signer}", subject=",".join(ids)
            )
        return existing, False
    material = list_certificates(session, ids)
    signer_alias = lookup(session, "x509", signer_id)
    signer_key = lifecycle.get(session, signer_alias.key_name)
    v, cert = x509_certificate(signer_key, signer_id)
    signer = cache.signer(v)[1]
    esl = uefi.esl_from_certificates(material.certificates, owner=uuid.uuid4())
    auth = uefi.make_auth(variable, esl, signer, cert, append=append_mode)
    stored = store_auth(session, variable, ids, signer=signer_id, esl=esl, auth=auth)
    digest = f"sha256:{hashlib.sha256(auth).hexdigest()}"
    event = AuditEvent(
        caller=caller,
        action=f"balena.secureboot-{variable_key}",
        result="ok",
        key_name=signer_key.name,
        key_version=v.version,
        digest=digest,
        detail=f"{variable} for {','.join(ids)}",
    )
    append(session, [event])
    return stored, True


def default_list_signer(session: Session, variable_key: str, ids: list[str]) -> str:
    """Who signs a list when the request names no signer: PK itself for PK (self-signed); the one PK for KEK; the
    list's own first certificate for db (what balenaSign's bootstrap does)."""
    from .balena_store import with_role

    if variable_key == "kek":
        pks = with_role(session, "pk")
        if len(pks) != 1:
            raise UsageError(
                "give signing_key_id: the PK that signs KEK (this service knows "
                f"{len(pks)} PK certificate(s) from /bootstrap)",
                subject="signing_key_id",
            )
        return pks[0].alias
    return ids[0]


# ---- bootstrap ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalenaBootstrap:
    """balenaSign's bootstrap document, checked."""

    gpg_uid: str | None
    rsa: bool
    certificates: dict[str, tuple[str, KeySpec]]  # role -> (cert id, spec)
    unsupported: tuple[str, ...]  # hab, ahab


def bootstrap_specs(plan: BalenaBootstrap) -> list[KeySpec]:
    specs = [spec for _, spec in plan.certificates.values()]
    if plan.gpg_uid is not None:
        specs.append(KeySpec(name=BOOTSTRAP_GPG, type="openpgp-rsa-3072", uid=plan.gpg_uid))
    if plan.rsa:
        specs.append(KeySpec(name=BOOTSTRAP_RSA, type="rsa-2048"))
    return specs


def run_bootstrap(
    session: Session,
    plan: BalenaBootstrap,
    *,
    master: MasterKey,
    cache: KeyCache,
    caller: str,
    privates: dict[str, PrivateKey],
) -> tuple[dict[str, Any], list[str]]:
    """Create what is missing (idempotently, as ``/v1/bootstrap``), alias it, sign PK, KEK and db once."""
    specs = bootstrap_specs(plan)
    keys, created = lifecycle.bootstrap(session, specs, master=master, caller=caller, privates=privates)
    by_name = {k.name: k for k in keys}
    reply: dict[str, Any] = {}
    certs: dict[str, str] = {}
    for role, (cert_id, spec) in plan.certificates.items():
        key = by_name[spec.name]
        alias_key(session, key, "x509", caller, alias=cert_id, role=role)
        v = signing_version(key)
        assert v.certificate_pem is not None
        certs[role] = v.certificate_pem
    if plan.gpg_uid is not None:
        reply["gpg"] = {"fingerprint": alias_key(session, by_name[BOOTSTRAP_GPG], "gpg", caller)}
    if plan.rsa:
        reply["rsa"] = {"fingerprint": alias_key(session, by_name[BOOTSTRAP_RSA], "rsa", caller)}
    for entry in plan.unsupported:
        reply[entry] = {"error": UNSUPPORTED}
    reply["certificates"] = certs
    ids = {role: cert_id for role, (cert_id, _) in plan.certificates.items()}
    if "pk" in ids:
        make_list_auth(session, cache, "pk", [ids["pk"]], signer_id=ids["pk"], append_mode=False, caller=caller)
        if "kek" in ids:
            make_list_auth(session, cache, "kek", [ids["kek"]], signer_id=ids["pk"], append_mode=False, caller=caller)
    if "db" in ids:
        make_list_auth(session, cache, "db", [ids["db"]], signer_id=ids["db"], append_mode=False, caller=caller)
    return reply, created


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


__all__ = [
    "AUTH_VARIABLES",
    "BalenaBootstrap",
    "alias_key",
    "bootstrap_specs",
    "cert_list",
    "cert_spec",
    "default_list_signer",
    "gpg_uid",
    "list_certificates",
    "make_list_auth",
    "openpgp_signer",
    "rsa_id",
    "rsa_signer",
    "run_bootstrap",
    "sign_efi",
    "sign_gpg",
    "sign_gpg_bytes",
    "sign_kmod",
    "sign_raw",
    "sign_rsa",
    "x509_certificate",
]
