"""The trust store on disk: one JSON document under a directory, written atomically under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .._internal.files import atomic_write_bytes, read_bounded
from ..errors import ConfigError, ConflictError, EnvironmentFailure, MalformedError, Reason, UsageError
from ._files import LoadedKey
from ._model import (
    MAX_TRUST_FILE_BYTES,
    TRUST_FILE,
    TRUST_SCHEMA,
    TrustedKey,
    TrustSet,
    _day,
    resolve_key,
)


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

    def add(self, *keys: TrustedKey, replace_existing: bool = False, allow_expired: bool = True) -> list[TrustedKey]:
        """Add keys (see :meth:`add_loaded`); return the entries as the store now holds them."""
        outcomes = self.add_loaded(
            [LoadedKey(k) for k in keys], replace_existing=replace_existing, allow_expired=allow_expired
        )
        return [o.key for o in outcomes]

    def add_loaded(
        self,
        items: Sequence[LoadedKey],
        *,
        replace_existing: bool = False,
        allow_expired: bool = True,
        now: datetime | None = None,
    ) -> list[AddOutcome]:
        """Add keys as :func:`load_trusted_key_file` read them; all or nothing.

        - The same key, already trusted under the same name with the same settings: nothing changes
          (``unchanged``). A key whose name came from its file keeps the name it is trusted under.
        - The same key under another name, or with other settings (expiry, constraints, an updated certificate),
          or another key under a taken name: a :class:`~signery.errors.ConflictError` naming ``--replace``, unless
          ``replace_existing``, which replaces those entries (``replaced``) but keeps a revocation: a revoked key
          stays revoked until :meth:`unrevoke`.
        - Keys given together whose names came from their files and are the same (two OpenPGP certificates of
          "Alice" with different e-mail addresses) are told apart by their ids: "Alice (<long key id>)".
        - An expiry that has passed is refused (reason ``expired-key``) unless ``allow_expired``.
        """
        when = now or datetime.now(UTC)
        with self._locked():
            current = list(self.load())
            original = {k.key_id for k in current}
            outcomes: list[AddOutcome] = []
            seen: dict[str, LoadedKey] = {}
            for item, renamed in _name_apart(items, current):
                new = item.key
                where = item.source or new.name
                earlier = seen.get(new.key_id)
                if earlier is not None and earlier.key.name == new.name:
                    outcomes.append(AddOutcome(new, "unchanged", source=item.source, note="given twice"))
                    continue
                if earlier is not None:
                    raise UsageError(
                        f"{earlier.source or earlier.key.name} and {where} are the same key ({new.short_id})",
                        subject=where,
                        hint="give it once",
                    )
                seen[new.key_id] = item
                clash = [k for k in current if k.name == new.name or k.key_id == new.key_id]
                same = next((k for k in clash if k.key_id == new.key_id), None)
                if same is not None and same.name == new.name and not same.settings_differ(new):
                    note = "revoked: `signery trust unrevoke` trusts it again" if same.revoked else None
                    outcomes.append(AddOutcome(same, "unchanged", source=item.source, note=note))
                    continue
                if clash and not replace_existing:
                    raise _clash_error(new, clash, where=where, in_store=[k for k in clash if k.key_id in original])
                if not allow_expired and new.expires is not None and new.expires <= when:
                    origin = "the expiry asked for" if item.expiry_from == "option" else "its own expiry"
                    raise UsageError(
                        f"{new.name!r} ({new.short_id}) from {where}: {origin}, {_day(new.expires)}, has passed; it "
                        "would be trusted for nothing",
                        reason=Reason.EXPIRED_KEY,
                        subject="--expires" if item.expiry_from == "option" else where,
                        hint="give a later --expires, or --force to add it anyway (verification then says expired-key)",
                    )
                note = renamed
                if same is not None and same.revoked and not new.revoked:
                    new = replace(new, revoked=True)
                    note = "stays revoked: `signery trust unrevoke` trusts it again"
                current = [k for k in current if k not in clash]
                current.append(new)
                outcomes.append(
                    AddOutcome(new, "replaced" if clash else "added", tuple(clash), source=item.source, note=note)
                )
            if any(o.action != "unchanged" for o in outcomes):
                self._save(current)
            return outcomes

    def remove(self, *idents: str) -> list[TrustedKey]:
        """Remove keys, each named as :meth:`TrustedKey.matches` takes it.

        An identifier that matches no key, or several, is an error, and then nothing changes.
        """
        with self._locked():
            current = list(self.load())
            gone: list[TrustedKey] = []
            for ident in idents:
                hit = resolve_key(current, ident)
                gone.append(hit)
                current.remove(hit)
            self._save(current)
            return gone

    def revoke(self, ident: str) -> TrustedKey:
        """Mark a key revoked: signatures by it are refused as ``revoked-key`` (kept, so the refusal is precise)."""
        return self._set_revoked(ident, revoked=True)

    def unrevoke(self, ident: str) -> TrustedKey:
        """Undo :meth:`revoke`. A certificate that carries its own revocation stays revoked (a usage error)."""
        return self._set_revoked(ident, revoked=False)

    def _set_revoked(self, ident: str, *, revoked: bool) -> TrustedKey:
        with self._locked():
            current = list(self.load())
            hit = resolve_key(current, ident)
            if hit.revoked == revoked:
                return hit
            if not revoked and _revoked_by_itself(hit):
                raise UsageError(
                    f"{hit.name} ({hit.short_id}) is revoked by its own certificate; unrevoke cannot undo that",
                    reason=Reason.REVOKED_KEY,
                    subject=hit.name,
                    hint="trust the key's new certificate or another key instead",
                )
            new = replace(hit, revoked=revoked)
            current[current.index(hit)] = new
            self._save(current)
            return new


@dataclass(frozen=True)
class AddOutcome:
    """What :meth:`TrustStore.add_loaded` did with one key.

    ``key`` is the entry as the store now holds it; ``action`` is ``added``, ``replaced`` (``replaced`` lists the
    entries it took the place of) or ``unchanged``; ``note`` says something worth telling (it stays revoked, it was
    named apart from another key given with it).
    """

    key: TrustedKey
    action: Literal["added", "replaced", "unchanged"]
    replaced: tuple[TrustedKey, ...] = ()
    source: str | None = None
    note: str | None = None


def _name_apart(items: Sequence[LoadedKey], current: Sequence[TrustedKey]) -> list[tuple[LoadedKey, str | None]]:
    """``items`` with their derived names settled, each with a note when its name was changed.

    A key already trusted keeps the name it is trusted under. Different keys given together whose derived names
    are the same (and not yet trusted) get their ids appended, so that neither is refused for the other's name.
    """
    by_id = {k.key_id: k for k in current}
    out: list[tuple[LoadedKey, str | None]] = []
    for item in items:
        known = by_id.get(item.key.key_id)
        if item.name_derived and known is not None and known.name != item.key.name:
            item = replace(item, key=replace(item.key, name=known.name))
        out.append((item, None))
    owners: dict[str, set[str]] = {}
    for item, _ in out:
        owners.setdefault(item.key.name, set()).add(item.key.key_id)
    for i, (item, _) in enumerate(out):
        k = item.key
        if item.name_derived and k.key_id not in by_id and len(owners[k.name]) > 1:
            note = f"another key given with it is also named {k.name!r}: told apart by key id"
            out[i] = (replace(item, key=replace(k, name=f"{k.name} ({k.short_id})")), note)
    return out


def _clash_error(new: TrustedKey, clash: list[TrustedKey], *, where: str, in_store: list[TrustedKey]) -> UsageError:
    """Why ``new`` (read from ``where``) cannot be added beside ``clash``, naming ``--replace``."""
    if not in_store:
        return UsageError(
            f"{where} and another key given with it are both named {new.name!r}",
            subject=where,
            hint="add them one at a time, each with its own --name",
        )
    same = next((k for k in in_store if k.key_id == new.key_id), None)
    if same is not None and same.name != new.name:
        return ConflictError(
            f"{new.short_id} from {where} is already trusted as {same.name!r}",
            subject=same.name,
            hint=f"give --replace to rename it to {new.name!r} (a revocation is kept); it is trusted already",
        )
    if same is not None:
        changes = ", ".join(same.settings_differ(new))
        return ConflictError(
            f"{same.name!r} ({same.short_id}) is already trusted; {where} would bring {changes}",
            subject=same.name,
            hint="give --replace to trust it with these settings (a revocation is kept)",
        )
    other = in_store[0]
    return ConflictError(
        f"the name {new.name!r} is taken by another key ({other.short_id}); {new.short_id} from {where} was not added",
        subject=new.name,
        hint="give --replace to trust this key under that name instead of the other, or --name to choose another",
    )


def _revoked_by_itself(key: TrustedKey) -> bool:
    """Whether ``key``'s own certificate revokes it (an OpenPGP key revocation signature)."""
    if key.kind != "openpgp":
        return False
    from .. import openpgp

    return openpgp.inspect_certificate(key.material.encode(), source=f"trust entry {key.name}").revoked
