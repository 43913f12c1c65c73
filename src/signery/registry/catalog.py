"""The in-memory catalogue the host protocols answer from: every published version with its manifest.

``/elastic/search`` over 10,000 packages must answer in milliseconds, so the protocols do not query the database
per request. The catalogue loads every version once (its row, its detached signatures, the manifest recorded at
publish time, see :meth:`RegistryStore.manifest_record`) and then follows the store: at once when this process
published (``store.generation``), and by polling the database's high-water marks every
:data:`POLL_SECONDS` for what other processes published. Versions are immutable, so an entry never changes except
by gaining signatures, which reloads it.

The signature forms each host reads (:mod:`signery.registry.hosts`) are derived here once per signature set.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..errors import SigneryError
from .hosts import collect_packets, elastic_signature, mattermost_signature
from .index import SignatureEntry, VersionIndex
from .naming import Version
from .store import RegistryStore

POLL_SECONDS = 2.0  # how stale the catalogue may be about what *another* process published


@dataclass
class CatalogEntry:
    """One published version as the host protocols see it."""

    row_id: int
    index: VersionIndex
    parsed: Version
    kind: str | None
    author: str | None
    doc: dict[str, Any]
    entry: str  # the manifest's path in the archive; its directory is the package root
    dify_checksum: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # per-protocol renderings, built on first use

    @property
    def name(self) -> str:
        return self.index.name

    @property
    def version(self) -> str:
        return self.index.version

    @property
    def root(self) -> str:
        return self.entry.rsplit("/", 1)[0] if "/" in self.entry else ""

    @property
    def signatures(self) -> tuple[SignatureEntry, ...]:
        return self.index.signatures


@dataclass(frozen=True)
class SignatureForms:
    elastic: bytes | None  # armored, the Kibana key's packet first
    mattermost: bytes | None  # binary, RSA packets only


class Catalog:
    """Every published version, by kind; kept in step with the store (see the module documentation)."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._entries: dict[int, CatalogEntry] = {}
        self._by_kind: dict[str, list[CatalogEntry]] = {}
        self._by_key: dict[tuple[str, str, str], CatalogEntry] = {}
        self._by_name: dict[tuple[str, str], list[CatalogEntry]] = {}
        self._refreshing: asyncio.Future[None] | None = None
        self._high: tuple[int, int] = (-1, -1)
        self._seen_generation = -1
        self._polled = 0.0
        self._forms: dict[tuple[str, ...], SignatureForms] = {}
        self.version = 0  # bumped whenever the content changes; response caches key on it

    # -- keeping in step --------------------------------------------------------------------------------------

    def _stale(self) -> bool:
        return self.store.generation != self._seen_generation or time.monotonic() - self._polled > POLL_SECONDS

    async def current(self) -> Catalog:
        """This catalogue, brought up to date first when it may be behind (a thread hop only then).

        Requests arriving while a refresh runs wait for that one (a burst of requests at the poll deadline costs
        one database round trip, not one each).
        """
        if self._stale():
            pending = self._refreshing
            if pending is None or pending.done() or pending.get_loop() is not asyncio.get_running_loop():
                pending = self._refreshing = asyncio.ensure_future(run_in_threadpool(self.refresh))
            await asyncio.shield(pending)
        return self

    def refresh(self) -> None:
        with self._lock:
            generation = self.store.generation
            high = self.store.high_water()
            self._polled = time.monotonic()
            if high == self._high:
                self._seen_generation = generation
                return
            old_v, old_s = self._high
            rows = self.store.all_versions(after_id=max(old_v, 0))
            if old_s >= 0 and high[1] > old_s:
                changed = [i for i in self.store.versions_with_signatures_after(old_s) if i in self._entries]
                if changed:
                    rows += self.store.all_versions(ids=changed)
            for row_id, index in rows:
                self._entries[row_id] = self._entry(row_id, index)
            by_kind: dict[str, list[CatalogEntry]] = {}
            for e in self._entries.values():
                by_kind.setdefault(e.kind or "", []).append(e)
            for items in by_kind.values():
                items.sort(key=lambda e: (e.name.lower(), _neg(e.parsed)))
            self._by_kind = by_kind
            self._by_key = {(e.kind or "", e.name, e.parsed.key): e for e in self._entries.values()}
            by_name: dict[tuple[str, str], list[CatalogEntry]] = {}
            for kind, items in by_kind.items():
                for e in items:
                    by_name.setdefault((kind, e.name), []).append(e)
            self._by_name = by_name
            self._high = high
            self._seen_generation = generation
            self.version += 1
            static = self.store.settings.static_dir
        if static is not None:
            from .static import sync_static_tree

            sync_static_tree(self, static)

    def _entry(self, row_id: int, index: VersionIndex) -> CatalogEntry:
        record: dict[str, Any] = {}
        try:
            record = self.store.manifest_record(index.sha256)
        except (SigneryError, OSError):
            record = {}
        doc = record.get("doc")
        return CatalogEntry(
            row_id=row_id,
            index=index,
            parsed=Version(index.version),
            kind=record.get("kind") if isinstance(record.get("kind"), str) else None,
            author=record.get("author") if isinstance(record.get("author"), str) else None,
            doc=doc if isinstance(doc, dict) else {},
            entry=str(record.get("entry") or ""),
            dify_checksum=record.get("dify_checksum") if isinstance(record.get("dify_checksum"), str) else None,
        )

    # -- reading ----------------------------------------------------------------------------------------------

    def of_kind(self, kind: str) -> list[CatalogEntry]:
        """Versions whose manifest is of ``kind``, by name (case-insensitive), newest version first."""
        return self._by_kind.get(kind, [])

    def named(self, kind: str, name: str) -> list[CatalogEntry]:
        """The versions of ``name`` (exact name) whose manifest is of ``kind``, newest first."""
        return self._by_name.get((kind, name), [])

    def find(self, kind: str, name: str, version: Version) -> CatalogEntry | None:
        """The version ``name@version`` (exact name) whose manifest is of ``kind``, if published."""
        return self._by_key.get((kind, name, version.key))

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(list(self._entries.values()))

    def signature_forms(self, entry: CatalogEntry) -> SignatureForms:
        """The signature each host reads for ``entry`` (derived once per set of detached signatures)."""
        key = tuple(s.sha256 for s in entry.signatures)
        forms = self._forms.get(key)
        if forms is None:
            files = []
            for sig in entry.signatures:
                try:
                    files.append((sig.filename, self.store.read_signature(sig.sha256)))
                except (SigneryError, OSError):
                    continue
            packets = collect_packets(files)
            settings = self.store.settings
            forms = SignatureForms(
                elastic=elastic_signature(packets, settings.kibana_keys),
                mattermost=mattermost_signature(packets, settings.mattermost_keys),
            )
            self._forms[key] = forms
        return forms


def _neg(v: Version) -> Any:
    """A sort key that orders versions newest first under an ascending sort."""
    return _Desc(v)


class _Desc:
    __slots__ = ("v",)

    def __init__(self, v: Version) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return other.v < self.v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


__all__ = ["Catalog", "CatalogEntry", "SignatureForms"]
