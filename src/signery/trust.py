"""The trust store: which keys are trusted, under what names, until when, and for what.

A :class:`TrustedKey` binds a public key to a name, an optional expiry, a revocation flag and
:class:`Constraints` (which categories it may claim, which package names it may sign, which formats). A
:class:`TrustSet` is an immutable set of them used by verifiers; an empty set trusts nothing. A
:class:`TrustStore` persists a set as one JSON document under a directory, written atomically under a lock.

Example::

    store = TrustStore(Path("~/.config/signery").expanduser())
    store.add(load_trusted_key_file(Path("alice.public.pem"), name="alice"))
    trust = store.load()
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

from ._internal.files import atomic_write_bytes, read_bounded
from .errors import ConfigError, EnvironmentFailure, MalformedError, Reason, UsageError
from .keys import PublicKey, key_id, load_public_key, public_key_pem, short_id

KeyKind = Literal["pkix", "openpgp"]
TRUST_FILE = "trust.json"
TRUST_SCHEMA = 1
MAX_TRUST_FILE_BYTES = 16 << 20  # thousands of keys fit; a larger file is not ours
MAX_KEY_FILE_BYTES = 1 << 20  # a public key or certificate is at most a few hundred KiB
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True)
class Constraints:
    """What a trusted key may vouch for. Empty tuples mean "no restriction" on that axis.

    Attributes:
        categories: categories the key may claim (Dify: ``langgenius``, ``partner``, ``community``).
        names: glob patterns the signed package name must match (``acme-*``, ``langgenius/*``).
        formats: signature formats the key is trusted for (``native``, ``dify``, ``openpgp``, ``ocm``).
    """

    categories: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()

    def violation(self, *, fmt: str, claims: Mapping[str, Any]) -> str | None:
        """Why a signature in format ``fmt`` making ``claims`` exceeds these constraints, or ``None``."""
        if self.formats and fmt not in self.formats:
            return f"key is trusted only for formats {', '.join(self.formats)}, not {fmt}"
        category = claims.get("category")
        if self.categories:
            if category is None:
                return f"key is limited to categories {', '.join(self.categories)} but the signature claims none"
            if str(category) not in self.categories:
                return f"key may not claim category {category!r} (allowed: {', '.join(self.categories)})"
        if self.names:
            name = claims.get("name")
            if name is None:
                return f"key is limited to names {', '.join(self.names)} but the signature names no package"
            if not any(fnmatch.fnmatchcase(str(name), pat) for pat in self.names):
                return f"key may not sign package {name!r} (allowed: {', '.join(self.names)})"
        return None

    def to_dict(self) -> dict[str, list[str]]:
        return {"categories": list(self.categories), "names": list(self.names), "formats": list(self.formats)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Constraints:
        def strs(key: str) -> tuple[str, ...]:
            v = d.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise MalformedError(f"trust constraint {key!r} must be a list of strings")
            return tuple(v)

        return cls(categories=strs("categories"), names=strs("names"), formats=strs("formats"))


@dataclass(frozen=True)
class TrustedKey:
    """One trusted public key.

    ``material`` is the key's public text: PEM SubjectPublicKeyInfo for ``pkix``, an armored certificate for
    ``openpgp``. ``key_id`` is the SPKI SHA-256 (pkix) or the primary key fingerprint (openpgp), lowercase hex.
    """

    name: str
    key_id: str
    kind: KeyKind
    material: str
    added_at: datetime
    expires: datetime | None = None
    revoked: bool = False
    constraints: Constraints = field(default_factory=Constraints)
    uids: tuple[str, ...] = ()
    subkey_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise MalformedError(f"invalid trust-store name {self.name!r}")
        if not re.fullmatch(r"[0-9a-f]{16,128}", self.key_id):
            raise MalformedError(f"invalid key id {self.key_id!r}")

    @property
    def short_id(self) -> str:
        return short_id(self.key_id)

    def public_key(self) -> PublicKey:
        """The key as a cryptography object (PKIX keys only)."""
        if self.kind != "pkix":
            raise UsageError(f"{self.name} is an OpenPGP key; use the OpenPGP format to verify with it")
        return load_public_key(self.material.encode(), source=f"trust entry {self.name}")

    def status_at(self, when: datetime) -> Reason | None:
        """``revoked-key`` or ``expired-key`` if the key is not usable at ``when``; else ``None``."""
        if self.revoked:
            return Reason.REVOKED_KEY
        if self.expires is not None and when >= self.expires:
            return Reason.EXPIRED_KEY
        return None

    def matches(self, ident: str) -> bool:
        """Whether ``ident`` (a name, a key id, a unique key-id prefix of 8+ hex digits) names this key."""
        ident_l = ident.lower()
        return (
            ident == self.name
            or ident_l == self.key_id
            or (
                len(ident_l) >= 8
                and (self.key_id.startswith(ident_l) or any(s.startswith(ident_l) for s in self.subkey_ids))
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "kind": self.kind,
            "material": self.material,
            "added_at": _iso(self.added_at),
            "expires": _iso(self.expires) if self.expires else None,
            "revoked": self.revoked,
            "constraints": self.constraints.to_dict(),
            "uids": list(self.uids),
            "subkey_ids": list(self.subkey_ids),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrustedKey:
        try:
            kind = d["kind"]
            if kind not in ("pkix", "openpgp"):
                raise MalformedError(f"unknown key kind {kind!r}")
            return cls(
                name=str(d["name"]),
                key_id=str(d["key_id"]),
                kind=kind,
                material=str(d["material"]),
                added_at=_parse_time(d["added_at"]),
                expires=_parse_time(d["expires"]) if d.get("expires") else None,
                revoked=bool(d.get("revoked", False)),
                constraints=Constraints.from_dict(d.get("constraints") or {}),
                uids=tuple(str(u) for u in d.get("uids", [])),
                subkey_ids=tuple(str(s) for s in d.get("subkey_ids", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"bad trust entry: {exc}") from exc

    def summary(self) -> dict[str, Any]:
        """What ``trust list --json`` shows: everything but the key material."""
        d = self.to_dict()
        del d["material"]
        return d


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(v: Any) -> datetime:
    if not isinstance(v, str):
        raise ValueError(f"expected an ISO time, got {v!r}")
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_expiry(text: str) -> datetime:
    """Parse ``--expires``: a date (``2027-01-31``, expiring at the start of that day, UTC) or an ISO time."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), time(0, 0), tzinfo=UTC)
        return _parse_time(text)
    except ValueError:
        raise UsageError(f"cannot parse expiry {text!r}; use YYYY-MM-DD or an ISO 8601 time", subject=text) from None


class TrustSet:
    """An immutable set of trusted keys. An empty set trusts nothing (fail closed)."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: tuple[TrustedKey, ...] = tuple(keys)
        self._by_id: dict[str, TrustedKey] = {}
        for k in self._keys:
            self._by_id.setdefault(k.key_id, k)
            for sub in k.subkey_ids:
                self._by_id.setdefault(sub, k)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def get(self, kid: str) -> TrustedKey | None:
        """The trusted key with this key id (or OpenPGP subkey fingerprint), if any."""
        return self._by_id.get(kid.lower())

    def of_kind(self, kind: KeyKind) -> TrustSet:
        return TrustSet(k for k in self._keys if k.kind == kind)

    def union(self, other: TrustSet) -> TrustSet:
        return TrustSet((*self._keys, *other._keys))


def trusted_key_from_public(
    public: PublicKey, *, name: str, expires: datetime | None = None, constraints: Constraints | None = None
) -> TrustedKey:
    return TrustedKey(
        name=name,
        key_id=key_id(public),
        kind="pkix",
        material=public_key_pem(public).decode(),
        added_at=datetime.now(UTC),
        expires=expires,
        constraints=constraints or Constraints(),
    )


def _looks_openpgp(data: bytes) -> bool:
    s = data.lstrip()
    if s.startswith(b"-----BEGIN PGP"):
        return True
    # Binary OpenPGP: first octet has bit 7 set; tags 6 (public key) or 5 (secret key), old or new format.
    if s and s[0] & 0x80:
        tag = (s[0] & 0x3F) if s[0] & 0x40 else ((s[0] >> 2) & 0x0F)
        return tag in (5, 6)
    return False


@dataclass(frozen=True)
class LoadedKey:
    """A key file read for the trust store.

    ``dropped_secret`` says a private key was given and only its public half was kept.
    """

    key: TrustedKey
    dropped_secret: bool = False


def load_trusted_key_file(
    path: Path,
    *,
    name: str | None = None,
    expires: datetime | None = None,
    constraints: Constraints | None = None,
) -> LoadedKey:
    """Read a PEM public key, an X.509 certificate or an OpenPGP certificate into a :class:`TrustedKey`.

    A private key (PEM or OpenPGP) is accepted and only its public part is kept; ``dropped_secret`` says so.
    Anything else is a ``malformed`` error naming the file.
    """
    path = Path(path)
    try:
        data = read_bounded(path, MAX_KEY_FILE_BYTES, what="key file")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", subject=str(path)) from None
    constraints = constraints or Constraints()
    if _looks_openpgp(data):
        # Imported here so that verifying a PEM-signed package never loads the OpenPGP machinery.
        from . import openpgp

        info = openpgp.inspect_certificate(data, source=str(path))
        default_name = info.primary_name or info.fingerprint[-16:]
        key_expires = info.expires
        if expires is not None and (key_expires is None or expires < key_expires):
            key_expires = expires
        return LoadedKey(
            TrustedKey(
                name=name or default_name,
                key_id=info.fingerprint,
                kind="openpgp",
                material=info.public_armored,
                added_at=datetime.now(UTC),
                expires=key_expires,
                revoked=info.revoked,
                constraints=constraints,
                uids=tuple(info.uids),
                subkey_ids=tuple(info.signing_subkeys),
            ),
            dropped_secret=info.was_secret,
        )
    stripped = data.strip()
    default = path.name.split(".")[0] or path.name
    if stripped.startswith(b"-----BEGIN CERTIFICATE"):
        from cryptography import x509  # costs ~100 ms to import; only certificate files need it

        try:
            cert = x509.load_pem_x509_certificate(stripped + b"\n")
        except ValueError as exc:
            raise MalformedError(f"{path} is not a valid X.509 certificate", subject=str(path)) from exc
        pub = load_public_key(cert.public_key().public_bytes(*_spki_pem()), source=str(path))
        not_after = cert.not_valid_after_utc
        exp = min(not_after, expires) if expires else not_after
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return LoadedKey(
            trusted_key_from_public(
                pub, name=name or (str(cn[0].value) if cn else default), expires=exp, constraints=constraints
            )
        )
    dropped = False
    if b"PRIVATE KEY" in stripped:
        from .keys import load_private_key

        pub = load_private_key(stripped, source=str(path)).public_key()
        dropped = True
    else:
        pub = load_public_key(stripped, source=str(path))
    return LoadedKey(
        trusted_key_from_public(pub, name=name or default, expires=expires, constraints=constraints), dropped
    )


def _spki_pem() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo


class TrustStore:
    """A trust set persisted as ``DIR/trust.json``; every change is atomic and serialised by a lock file."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / TRUST_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = (self.directory / ".trust.lock").open("a")
        except OSError as exc:
            raise EnvironmentFailure(
                f"trust store {self.directory} is not writable: {exc.strerror}", subject=str(self.directory)
            ) from None
        with fd:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield

    def load(self) -> TrustSet:
        """Read the store; a missing store is an empty set (which trusts nothing)."""
        try:
            raw = read_bounded(self.path, MAX_TRUST_FILE_BYTES, what="trust store", error=ConfigError)
        except FileNotFoundError:
            return TrustSet()
        except OSError as exc:
            raise ConfigError(
                f"trust store {self.path} cannot be read: {exc.strerror}", subject=str(self.path)
            ) from None
        try:
            doc = json.loads(raw)
            if doc.get("schema") != TRUST_SCHEMA or not isinstance(doc.get("keys"), list):
                raise ValueError("unknown schema")
            return TrustSet(TrustedKey.from_dict(k) for k in doc["keys"])
        except (ValueError, AttributeError, MalformedError) as exc:
            raise ConfigError(f"trust store {self.path} is corrupt: {exc}", subject=str(self.path)) from None

    def _save(self, keys: Iterable[TrustedKey]) -> None:
        doc = {"schema": TRUST_SCHEMA, "keys": [k.to_dict() for k in keys]}
        atomic_write_bytes(self.path, json.dumps(doc, indent=2).encode() + b"\n", mode=0o644)

    def add(self, *keys: TrustedKey, replace_existing: bool = False) -> list[TrustedKey]:
        """Add keys; a name or key id already present is refused unless ``replace_existing``."""
        with self._locked():
            current = list(self.load())
            for new in keys:
                clash = [k for k in current if k.name == new.name or k.key_id == new.key_id]
                if clash and not replace_existing:
                    c = clash[0]
                    what = "name" if c.name == new.name else "key"
                    raise UsageError(
                        f"the trust store already has {what} {c.name!r} ({c.short_id})",
                        subject=c.name,
                        hint="remove it first, or choose another --name",
                    )
                current = [k for k in current if k not in clash]
                current.append(new)
            self._save(current)
            return list(keys)

    def remove(self, *idents: str) -> list[TrustedKey]:
        """Remove keys by name or key id.

        An identifier that matches no key, or several, is an error, and then nothing changes.
        """
        with self._locked():
            current = list(self.load())
            gone: list[TrustedKey] = []
            for ident in idents:
                hits = [k for k in current if k.matches(ident)]
                if not hits:
                    raise UsageError(f"no trusted key matches {ident!r}", subject=ident)
                if len(hits) > 1:
                    raise UsageError(f"{ident!r} matches {len(hits)} keys; use the full key id", subject=ident)
                gone.append(hits[0])
                current.remove(hits[0])
            self._save(current)
            return gone

    def revoke(self, ident: str) -> TrustedKey:
        """Mark a key revoked: signatures by it are refused as ``revoked-key`` (kept, so the refusal is precise)."""
        with self._locked():
            current = list(self.load())
            hits = [k for k in current if k.matches(ident)]
            if len(hits) != 1:
                raise UsageError(f"{ident!r} matches {len(hits)} keys", subject=ident)
            new = replace(hits[0], revoked=True)
            current[current.index(hits[0])] = new
            self._save(current)
            return new


__all__ = [
    "Constraints",
    "LoadedKey",
    "TrustSet",
    "TrustStore",
    "TrustedKey",
    "load_trusted_key_file",
    "parse_expiry",
    "trusted_key_from_public",
]
