"""balenaSign's key ids as aliases of signery keys, and the PK/KEK/db ``.auth`` files made once per certificate list.

balenaSign addresses keys by its own ids: OpenPGP fingerprints (looked up as gpg does, in any case, or by the long
key id), certificate ids (``balenaos-kmod``) and opaque RSA ids (32 hex digits). Here each id is a row of
``balena_aliases`` naming the signery key that answers it (kind ``gpg``, ``x509`` or ``rsa``). Keys made through
the balena routes are named ``balena-<kind>-<id>`` so that one ``sign:balena-*`` scope covers them.

A certificate list (``/secureboot/kek/a,b``) is named, as balenaSign names it, by SHA3-256 over its sorted unique ids
joined with NUL; its ESL and ``.auth`` are made once (``POST /secureboot/pk|kek|db`` or ``/bootstrap``) and stored in
``balena_auth``, so every later ``GET`` serves the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import LargeBinary, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .._internal.names import is_name
from ..errors import NotFoundError, Reason, UsageError
from .audit import utc_now
from .keys.cache import KEY_CACHE_SECONDS, MAX_CACHED_KEYS
from .storage import Database

KINDS = ("gpg", "x509", "rsa")
ROLES = ("pk", "kek", "db", "kmod")
VARIABLES = {"pk": "PK", "kek": "KEK", "db": "db", "dbx": "dbx"}
MAX_LIST_IDS = 64  # certificates in one ESL; firmware stores far fewer
_HEX = re.compile(r"^(0x)?([0-9a-fA-F]+)$")
_CERT_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")  # balenaSign joins these into file names; signery refuses the rest


class _Base(DeclarativeBase):
    pass


class AliasRow(_Base):
    __tablename__ = "balena_aliases"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The foreign key lives in the migration (keys.name, ON DELETE CASCADE): this metadata does not hold "keys".
    key_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))


class AuthRow(_Base):
    __tablename__ = "balena_auth"

    variable: Mapped[str] = mapped_column(String(8), primary_key=True)
    list_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cert_ids: Mapped[str] = mapped_column(Text)
    signer: Mapped[str] = mapped_column(String(128))
    esl: Mapped[bytes] = mapped_column(LargeBinary)
    auth: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[str] = mapped_column(String(40))


def gpg_aliases(fingerprint: str) -> list[str]:
    """The ids an OpenPGP v4 key answers to: its fingerprint and its long key id, lower case."""
    fpr = fingerprint.lower()
    return [fpr, fpr[-16:]]


def normalise(kind: str, alias: str) -> str:
    """``alias`` as stored: hex ids in lower case (gpg matches them in any case); certificate ids as given.

    Raises:
        UsageError: an id balenaSign's patterns would refuse (and which signery never stores).
    """
    if kind == "gpg":
        m = _HEX.fullmatch(alias)
        if m is None or len(m.group(2)) not in (16, 40):
            raise UsageError(f"{alias[:80]!r} is not an OpenPGP fingerprint or long key id", subject="key_id")
        return m.group(2).lower()
    if kind == "rsa":
        if not re.fullmatch(r"[0-9a-fA-F]{1,128}", alias):
            raise UsageError(f"{alias[:80]!r} is not an RSA key id (hex)", subject="key_id")
        return alias.lower()
    if not _CERT_ID.fullmatch(alias):
        raise UsageError(f"{alias[:80]!r} is not a certificate id ([A-Za-z0-9._-], 1-100)", subject="cert_id")
    return alias


def key_name_for(kind: str, alias: str) -> str:
    """The signery key name for a key made under balena id ``alias``: ``balena-<kind>-<id>``, hashed if too long."""
    name = f"balena-{'cert' if kind == 'x509' else kind}-{alias}"
    if len(name) <= 64 and is_name(name):
        return name
    return f"balena-{kind}-{hashlib.sha256(alias.encode()).hexdigest()[:40]}"


@dataclass(frozen=True)
class Alias:
    kind: str
    alias: str
    key_name: str
    role: str | None


def lookup(session: Session, kind: str, alias: str) -> Alias:
    """The key behind balena id ``alias``; 404 (``unknown-key``) when there is none."""
    value = normalise(kind, alias)
    row = session.get(AliasRow, (kind, value))
    if row is None:
        what = {"gpg": "OpenPGP key", "x509": "certificate", "rsa": "RSA key"}[kind]
        raise NotFoundError(f"no {what} {alias}", reason=Reason.UNKNOWN_KEY, subject=alias)
    return Alias(row.kind, row.alias, row.key_name, row.role)


class AliasCache:
    """The aliases one server process has looked up, fresh for :data:`~.keys.cache.KEY_CACHE_SECONDS` as key
    descriptions are (:class:`~.keys.cache.KeyCache`): an alias never moves to another key (:func:`add` refuses),
    so all that can change is that it goes, with its key; a key deleted through another process is forgotten here
    within that time, and :meth:`forget` drops an alias at once (the routes do when its key is not found). Unknown
    ids are not remembered. Thread-safe."""

    def __init__(self) -> None:
        self._hits: OrderedDict[tuple[str, str], tuple[Alias, float]] = OrderedDict()
        self._lock = threading.Lock()

    def fresh(self, kind: str, alias: str) -> Alias | None:
        """The alias as looked up less than the freshness time ago, else ``None`` (then :meth:`load`)."""
        with self._lock:
            hit = self._hits.get((kind, alias))
        if hit is None or time.monotonic() - hit[1] > KEY_CACHE_SECONDS:
            return None
        return hit[0]

    def load(self, db: Database, kind: str, alias: str) -> Alias:
        """:func:`lookup` in the database, remembered. Blocking."""
        with db.read_session() as session:
            found = lookup(session, kind, alias)
        with self._lock:
            self._hits[(kind, alias)] = (found, time.monotonic())
            self._hits.move_to_end((kind, alias))
            while len(self._hits) > MAX_CACHED_KEYS:
                self._hits.popitem(last=False)
        return found

    def forget(self, kind: str, alias: str) -> None:
        with self._lock:
            self._hits.pop((kind, alias), None)


_CACHES: weakref.WeakKeyDictionary[Database, AliasCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def alias_cache(db: Database) -> AliasCache:
    """The alias cache of ``db`` in this process (one per database object: an app and its worker threads)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(db)
        if cache is None:
            cache = _CACHES[db] = AliasCache()
        return cache


def add(session: Session, kind: str, alias: str, key_name: str, *, role: str | None = None) -> None:
    """Point ``alias`` at ``key_name`` (idempotent; a role given is recorded)."""
    value = normalise(kind, alias)
    row = session.get(AliasRow, (kind, value))
    if row is None:
        session.add(AliasRow(kind=kind, alias=value, key_name=key_name, role=role, created_at=utc_now()))
    else:
        if row.key_name != key_name:
            from ..errors import ConflictError

            raise ConflictError(f"{kind} id {alias} already names another key", subject=alias)
        if role is not None:
            row.role = role
    session.flush()


def aliases(session: Session, kind: str) -> list[Alias]:
    stmt = select(AliasRow).where(AliasRow.kind == kind).order_by(AliasRow.alias)
    return [Alias(r.kind, r.alias, r.key_name, r.role) for r in session.scalars(stmt)]


def with_role(session: Session, role: str) -> list[Alias]:
    stmt = select(AliasRow).where(AliasRow.kind == "x509", AliasRow.role == role).order_by(AliasRow.alias)
    return [Alias(r.kind, r.alias, r.key_name, r.role) for r in session.scalars(stmt)]


def cert_list(ids: str | list[str]) -> list[str]:
    """A comma list of certificate ids (or a JSON list) as its sorted unique ids."""
    items = ids.split(",") if isinstance(ids, str) else list(ids)
    clean = sorted({normalise("x509", i.strip()) for i in items if i.strip()})
    if not clean:
        raise UsageError("no certificate id given", subject="cert_id")
    if len(clean) > MAX_LIST_IDS:
        raise UsageError(f"at most {MAX_LIST_IDS} certificate ids in one list", subject="cert_id")
    return clean


def list_name(ids: list[str]) -> str:
    """balenaSign's name for a certificate list: SHA3-256 of the sorted unique ids joined with NUL."""
    return hashlib.sha3_256("\0".join(sorted(set(ids))).encode()).hexdigest()


@dataclass(frozen=True)
class StoredAuth:
    variable: str
    cert_ids: list[str]
    signer: str
    esl: bytes
    auth: bytes


def stored_auth(session: Session, variable: str, ids: list[str]) -> StoredAuth | None:
    row = session.get(AuthRow, (variable, list_name(ids)))
    if row is None:
        return None
    return StoredAuth(row.variable, json.loads(row.cert_ids), row.signer, row.esl, row.auth)


def store_auth(session: Session, variable: str, ids: list[str], *, signer: str, esl: bytes, auth: bytes) -> StoredAuth:
    """Keep the first ``.auth`` made for this list; a later (retried, concurrent) one yields the stored one."""
    existing = stored_auth(session, variable, ids)
    if existing is not None:
        return existing
    session.add(
        AuthRow(
            variable=variable,
            list_name=list_name(ids),
            cert_ids=json.dumps(sorted(set(ids))),
            signer=signer,
            esl=esl,
            auth=auth,
            created_at=utc_now(),
        )
    )
    session.flush()
    return StoredAuth(variable, sorted(set(ids)), signer, esl, auth)


__all__ = [
    "KINDS",
    "ROLES",
    "VARIABLES",
    "Alias",
    "AliasCache",
    "AliasRow",
    "AuthRow",
    "StoredAuth",
    "add",
    "alias_cache",
    "aliases",
    "cert_list",
    "gpg_aliases",
    "key_name_for",
    "list_name",
    "lookup",
    "normalise",
    "store_auth",
    "stored_auth",
    "with_role",
]
