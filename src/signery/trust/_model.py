"""Trusted keys, their constraints, and sets of them: what verifiers judge signatures against."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from .._internal.records import fields_json
from ..errors import MalformedError, Reason, UsageError
from ..keys import PublicKey, key_id, load_public_key, public_key_pem, short_id

KeyKind = Literal["pkix", "openpgp", "hybrid"]  # hybrid: an Ed25519 + ML-DSA-65 bundle (native format only)
TRUST_FILE = "trust.json"
TRUST_SCHEMA = 1
MAX_TRUST_FILE_BYTES = 16 << 20  # thousands of keys fit; a larger file is not ours
MAX_KEY_FILE_BYTES = 1 << 20  # a public key or certificate is at most a few hundred KiB
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
MIN_ID_DIGITS = 16  # a shorter key-id prefix (or gpg's 8-digit short key id) is too easy to collide
OPENPGP_V4_FINGERPRINT_DIGITS = 40
_HEX_RE = re.compile(r"[0-9a-f]+")

# --- naming a key -------------------------------------------------------------------------------------------------
# The one rule for what names a trusted key, used by every command that takes one (trust remove/show/revoke/
# unrevoke, anything that looks a key up by what a person typed): its name, exactly; or its id spelt in any case,
# with or without spaces (gpg prints "ABCD 1234 ...") and a 0x prefix: for an OpenPGP key the full fingerprint
# (of the primary key or a signing subkey) or its long key id (the low 64 bits: the last 16 hex digits, as gpg
# shows it); for any key a unique prefix of at least 16 hex digits of its key id (what signery used to show).


def normalize_key_ident(ident: str) -> str | None:
    """``ident`` as lowercase hex without spaces or ``0x``; ``None`` when it is not a hex key id at all."""
    text = "".join(ident.split()).lower()
    text = text.removeprefix("0x")
    return text if _HEX_RE.fullmatch(text) else None


def short_key_id(kid: str, kind: KeyKind | None = None) -> str:
    """The id shown to people: an OpenPGP key's long key id (the last 16 hex digits of its fingerprint, as gpg shows
    it), or the first 16 hex digits of signery's key id (a PKIX key). Without ``kind``, a 40-digit id is taken for
    an OpenPGP v4 fingerprint (signery's PKIX key ids are 64 digits)."""
    if kind == "openpgp" or (kind is None and len(kid) == OPENPGP_V4_FINGERPRINT_DIGITS):
        return kid[-16:]
    return short_id(kid)


def _id_matches(kid: str, digits: str, *, openpgp: bool) -> bool:
    if len(digits) < MIN_ID_DIGITS:
        return False
    return kid.startswith(digits) or (openpgp and len(digits) == 16 and kid.endswith(digits))


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
    ``openpgp``, the Ed25519 and the ML-DSA-65 SPKI PEM blocks, in that order, for ``hybrid``
    (:func:`trusted_key_from_bundle`). ``key_id`` is the SPKI SHA-256 (pkix), the primary key fingerprint
    (openpgp) or :func:`~signery.hybrid.hybrid_key_id` (hybrid), lowercase hex.
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
    certificate: str | None = None  # the X.509 certificate (PEM) the key came from, when it came from one
    # hybrid only: a signature counts only when the envelope also carries a valid one by the other half
    requires_all: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise MalformedError(f"invalid trust-store name {self.name!r}")
        if not re.fullmatch(r"[0-9a-f]{16,128}", self.key_id):
            raise MalformedError(f"invalid key id {self.key_id!r}")

    @property
    def short_id(self) -> str:
        """What people are shown: the long key id of an OpenPGP key, the first 16 hex digits of a PKIX key id."""
        return short_key_id(self.key_id, self.kind)

    def public_key(self) -> PublicKey:
        """The key as a cryptography object (PKIX keys only)."""
        if self.kind == "hybrid":
            raise UsageError(f"{self.name} is a hybrid key bundle; only the native format verifies with it")
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
        """Whether ``ident`` names this key: its name, or its id as the rule above spells it."""
        if ident == self.name:
            return True
        digits = normalize_key_ident(ident)
        if digits is None:
            return False
        openpgp = self.kind == "openpgp"
        return any(_id_matches(kid, digits, openpgp=openpgp) for kid in (self.key_id, *self.subkey_ids))

    def to_dict(self) -> dict[str, Any]:
        names = "name key_id kind material added_at expires revoked constraints uids subkey_ids"
        expires = _iso(self.expires) if self.expires else None
        return {
            **fields_json(self, names, added_at=_iso(self.added_at), expires=expires),
            **({"certificate": self.certificate} if self.certificate else {}),
            **({"requires_all": self.requires_all} if self.kind == "hybrid" else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrustedKey:
        try:
            kind = d["kind"]
            if kind not in ("pkix", "openpgp", "hybrid"):
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
                certificate=str(d["certificate"]) if d.get("certificate") else None,
                requires_all=bool(d.get("requires_all", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"bad trust entry: {exc}") from exc

    def summary(self) -> dict[str, Any]:
        """What ``trust list --json`` shows: everything but the key material."""
        d = self.to_dict()
        del d["material"]
        d.pop("certificate", None)  # key material too (a CA certificate is what OCM chains are checked up to)
        d["short_id"] = self.short_id
        return d

    def settings_differ(self, other: TrustedKey) -> list[str]:
        """What ``other`` (the same key, read again) would change here: key material, UIDs, expiry, constraints."""
        out = []
        if other.material.strip() != self.material.strip() or other.certificate != self.certificate:
            out.append("an updated certificate" if self.kind == "openpgp" or self.certificate else "other key material")
        if other.uids != self.uids:
            out.append("other user ids")
        if other.expires != self.expires:
            out.append(f"expiry {_day(other.expires)} instead of {_day(self.expires)}")
        if other.requires_all != self.requires_all:
            out.append("both signatures required" if other.requires_all else "either signature enough")
        if other.constraints != self.constraints:
            out.append("other constraints")
        return out


def _day(t: datetime | None) -> str:
    return "none" if t is None else _iso(t)


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

    def find(self, ident: str) -> list[TrustedKey]:
        """The keys ``ident`` names (see :meth:`TrustedKey.matches`): none, one, or several when it is ambiguous."""
        return [k for k in self._keys if k.matches(ident)]

    def resolve(self, ident: str) -> TrustedKey:
        """The one key ``ident`` names; a usage error naming ``ident`` when it names none or several."""
        return resolve_key(self._keys, ident)


def resolve_key(keys: Iterable[TrustedKey], ident: str) -> TrustedKey:
    """The one key of ``keys`` that ``ident`` names (a name, a fingerprint, a long key id, a 16+ digit prefix).

    Raises:
        UsageError: ``ident`` names no key, or several (the message lists them).
    """
    hits = [k for k in keys if k.matches(ident)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        listed = ", ".join(f"{k.name} ({k.short_id})" for k in hits[:5])
        raise UsageError(
            f"{ident!r} matches {len(hits)} trusted keys: {listed}",
            subject=ident,
            hint="give the key's name or its full fingerprint / key id",
        )
    digits = normalize_key_ident(ident)
    if digits is not None and len(digits) < MIN_ID_DIGITS:
        hint = (
            f"a key id needs at least {MIN_ID_DIGITS} hex digits: an OpenPGP long key id (the last 16 of the "
            "fingerprint), a full fingerprint, or the first 16+ of a key id"
        )
    else:
        hint = "give a name, a fingerprint or a long key id as `signery trust list` shows them"
    raise UsageError(f"no trusted key matches {ident!r}", subject=ident, hint=hint)


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


def trusted_key_from_bundle(
    classical: PublicKey,
    post_quantum: PublicKey,
    *,
    name: str,
    requires_all: bool = True,
    expires: datetime | None = None,
    constraints: Constraints | None = None,
) -> TrustedKey:
    """A trust entry for a hybrid bundle (Ed25519 + ML-DSA-65): its key id is the bundle's, ``subkey_ids`` are the
    halves' (so a signature by either finds it), ``material`` the public bundle PEM. ``requires_all`` (the default):
    a package needs valid signatures by both halves in one envelope; otherwise each counts on its own."""
    from ..hybrid import hybrid_key_id, hybrid_public_pem

    return TrustedKey(
        name=name,
        key_id=hybrid_key_id(classical, post_quantum),
        kind="hybrid",
        material=hybrid_public_pem(classical, post_quantum).decode(),
        added_at=datetime.now(UTC),
        expires=expires,
        constraints=constraints or Constraints(),
        subkey_ids=(key_id(classical), key_id(post_quantum)),
        requires_all=requires_all,
    )
