"""The registry's operations, independent of HTTP: publish, look up, search, tokens.

Routes and the ``signery registry token`` commands both call this class. It never verifies signatures: a registry
stores and serves bytes, and never vouches for them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from .._internal.files import atomic_write_bytes, read_bounded
from .._internal.parse import load_json
from ..errors import (
    ConflictError,
    MalformedError,
    NotFoundError,
    PolicyViolationError,
    Reason,
    SigneryError,
)
from ..package import PackageManifest
from .blobs import BlobStore
from .db import open_engine, session_factory
from .hosts import check_publishable, dify_checksum
from .index import PackageSummary, SignatureEntry, VersionIndex
from .metadata import detect_metadata
from .models import Package, PackageVersion, Signature, Token
from .naming import (
    Version,
    check_filename,
    check_sha256,
    check_signature_filename,
    latest_version,
    name_key,
)
from .settings import (
    MAX_SIGNATURE_SIZE,
    MAX_SIGNATURES_PER_PUBLISH,
    MAX_SIGNATURES_PER_VERSION,
    RegistrySettings,
)
from .tokens import (
    AuthenticationError,
    Publisher,
    check_scopes,
    check_token_name,
    new_token,
    secret_matches,
    split_token,
)

MAX_SEARCH_RESULTS = 100  # one page of results; a query is not a way to dump the registry
MAX_QUERY_LENGTH = 128  # longer than any package name
EMBEDDED_DIR = "embedded"  # data_dir/embedded/<sha256>: the signature formats a published blob carries inside
MANIFEST_DIR = "manifests"  # data_dir/manifests/<sha256>: the parsed manifest the host protocols serve from
MANIFEST_RECORD_FORMAT = 1


@dataclass(frozen=True)
class SignatureUpload:
    """A detached signature staged with ``POST /api/uploads``, to attach under ``filename``."""

    filename: str
    sha256: str

    def __post_init__(self) -> None:
        check_signature_filename(self.filename)
        check_sha256(self.sha256)


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _iso(t: datetime) -> str:
    if t.tzinfo is None:  # SQLite hands back naive datetimes; they were written as UTC
        t = t.replace(tzinfo=UTC)
    return t.isoformat().replace("+00:00", "Z")


def version_paths(name: str, version: str) -> str:
    return f"/api/packages/{quote(name, safe='')}/{quote(version, safe='')}"


class RegistryStore:
    """Metadata in a SQL database plus content-addressed blobs on disk."""

    def __init__(self, settings: RegistrySettings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine if engine is not None else open_engine(settings)
        self._sessions = session_factory(self.engine)
        self.blobs = BlobStore(settings.blob_dir, settings.staging_dir)
        self.generation = 0  # bumped by every commit this process makes; readers' caches key on it

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    # -- tokens -------------------------------------------------------------------------------------------------

    def create_token(self, name: str, *, scopes: Sequence[str] = ()) -> tuple[TokenInfo, str]:
        """A new publisher token; returns its info and the token text, which is never stored nor shown again."""
        check_token_name(name)
        patterns = check_scopes(list(scopes))
        token_id, secret_hash, text = new_token()
        row = Token(id=token_id, name=name, secret_hash=secret_hash, scopes="\n".join(patterns))
        with self.session() as s:
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                raise ConflictError(f"a token named {name!r} exists", subject=name) from None
            return self._token_info(row), text

    def list_tokens(self) -> list[TokenInfo]:
        with self.session() as s:
            return [self._token_info(t) for t in s.scalars(select(Token).order_by(Token.created_at))]

    def revoke_token(self, ident: str) -> TokenInfo:
        with self.session() as s:
            row = s.scalars(select(Token).where((Token.name == ident) | (Token.id == ident))).first()
            if row is None:
                raise NotFoundError(f"no token named {ident!r}", subject=ident)
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                s.commit()
            return self._token_info(row)

    def authenticate(self, token_text: str | None) -> Publisher:
        """The publisher behind a token; :class:`AuthenticationError` for anything else, always the same message."""
        if not token_text:
            raise AuthenticationError("a publisher token is required")
        token_id, secret = split_token(token_text)
        with self.session() as s:
            row = s.get(Token, token_id)
        # Compare even when the row is missing, so timing does not tell which ids exist.
        stored = row.secret_hash if row is not None else "0" * 64
        ok = secret_matches(secret, stored)
        if row is None or not ok or row.revoked_at is not None:
            raise AuthenticationError("invalid token")
        return Publisher(name=row.name, scopes=tuple(row.scopes.split("\n")))

    @staticmethod
    def _token_info(row: Token) -> TokenInfo:
        return TokenInfo(row.id, row.name, tuple(row.scopes.split("\n")), row.created_at, row.revoked_at)

    # -- publishing ---------------------------------------------------------------------------------------------

    def publish(
        self,
        publisher: Publisher,
        *,
        package_sha256: str,
        filename: str,
        signatures: Sequence[SignatureUpload] = (),
        name: str | None = None,
        version: str | None = None,
        allow_unverifiable: bool = False,
    ) -> tuple[VersionIndex, bool]:
        """Publish staged bytes as name@version, or add signatures to an existing identical version.

        Returns the version's index and whether the version was created (False: it existed, and any new
        signatures were added). Nothing is committed unless every check passes; blobs are moved into the store
        before the database row that points to them is committed, so a row never points to a missing blob.

        Raises:
            ConflictError: name@version exists with different bytes (immutability), or a signature name clash.
            PolicyViolationError: scope, --require-signatures, metadata that disagrees with name/version, or
                signatures that no host the package is served to could verify (:func:`hosts.check_publishable`),
                unless ``allow_unverifiable``.
            UnsafeArchiveError / MalformedError: the package itself.
        """
        check_sha256(package_sha256)
        check_filename(filename, what="package file name")
        if len(signatures) > MAX_SIGNATURES_PER_PUBLISH:
            raise MalformedError(f"at most {MAX_SIGNATURES_PER_PUBLISH} signatures per publish", subject="signatures")
        try:
            return self._publish(publisher, package_sha256, filename, signatures, name, version, allow_unverifiable)
        except SigneryError:
            # A refused publish leaves nothing behind: not in the store, not even in the staging area.
            for digest in (package_sha256, *(sig.sha256 for sig in signatures)):
                with contextlib.suppress(FileNotFoundError):
                    self.blobs.staged_path(digest).unlink()
            raise

    def _publish(
        self,
        publisher: Publisher,
        package_sha256: str,
        filename: str,
        signatures: Sequence[SignatureUpload],
        name: str | None,
        version: str | None,
        allow_unverifiable: bool = False,
    ) -> tuple[VersionIndex, bool]:
        staged = self._staged(package_sha256, max_size=self.settings.max_upload_size, what="package")
        if staged is None:
            return self._add_signatures_to_existing(publisher, package_sha256, signatures, name, version)
        meta = detect_metadata(staged, name=name, version=version)
        publisher.check_may_publish(meta.name)
        embedded = embedded_formats(staged)  # what the package carries inside itself, judged by no one here
        for sig in signatures:
            self._staged_or_stored(sig.sha256, max_size=MAX_SIGNATURE_SIZE, what=f"signature {sig.filename}")
        with self.session() as s:
            existing = self._find_version(s, meta.name, meta.version)
            if existing is not None:
                if existing.sha256 != package_sha256:
                    raise ConflictError(
                        f"{meta.name}@{meta.version} is already published with different bytes; versions are immutable",
                        subject=f"{meta.name}@{meta.version}",
                    )
                self.blobs.promote(package_sha256)  # same bytes: drop the staged copy
                return self._attach(s, existing, publisher, signatures)
            if self.settings.require_signatures and not signatures:
                raise PolicyViolationError(
                    f"this registry requires a detached signature with every package; {meta.name}@{meta.version} "
                    "has none",
                    reason=Reason.UNSIGNED,
                    subject=f"{meta.name}@{meta.version}",
                )
            if not allow_unverifiable:
                check_publishable(
                    kind=meta.manifest.kind if meta.manifest is not None else None,
                    ref=f"{meta.name}@{meta.version}",
                    signatures=[(sig.filename, self._signature_bytes(sig.sha256)) for sig in signatures],
                    embedded=embedded,
                    protocols=self.settings.protocols,
                    kibana_keys=self.settings.kibana_keys,
                )
            sig_rows = self._signature_rows(signatures, publisher)
            self.blobs.promote(package_sha256)
            self._record_embedded(package_sha256, embedded)
            self._record_manifest(package_sha256, meta.manifest)
            pkg = s.scalars(select(Package).where(Package.name_key == name_key(meta.name))).first()
            if pkg is None:
                pkg = Package(name=meta.name, name_key=name_key(meta.name))
                s.add(pkg)
            row = PackageVersion(
                package=pkg,
                version=meta.version,
                version_key=Version(meta.version).key,
                filename=filename,
                sha256=package_sha256,
                size=staged_size(self.blobs.path(package_sha256)),
                publisher=publisher.name,
            )
            row.signatures = sig_rows
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                raise ConflictError(
                    f"{meta.name}@{meta.version} was published concurrently; retry to see whether the bytes match",
                    subject=f"{meta.name}@{meta.version}",
                ) from None
            self.generation += 1
            return self._index(row, pkg.name), True

    def _add_signatures_to_existing(
        self,
        publisher: Publisher,
        package_sha256: str,
        signatures: Sequence[SignatureUpload],
        name: str | None,
        version: str | None,
    ) -> tuple[VersionIndex, bool]:
        # The package bytes were not re-uploaded: allowed only to add signatures to a version holding those bytes.
        if name is None or version is None:
            raise NotFoundError(f"no staged upload {package_sha256}; upload the package first", subject=package_sha256)
        publisher.check_may_publish(name)
        with self.session() as s:
            existing = self._find_version(s, name, version)
            if existing is None or existing.sha256 != package_sha256:
                raise NotFoundError(
                    f"no staged upload {package_sha256}; upload the package first", subject=package_sha256
                )
            for sig in signatures:
                self._staged_or_stored(sig.sha256, max_size=MAX_SIGNATURE_SIZE, what=f"signature {sig.filename}")
            return self._attach(s, existing, publisher, signatures)

    def _attach(
        self, s: Session, row: PackageVersion, publisher: Publisher, signatures: Sequence[SignatureUpload]
    ) -> tuple[VersionIndex, bool]:
        known = {sig.sha256: sig for sig in row.signatures}
        by_name = {sig.filename: sig for sig in row.signatures}
        new = []
        for up in signatures:
            if up.sha256 in known:
                continue  # the same signature again: idempotent
            if up.filename in by_name:
                raise ConflictError(
                    f"{row.package.name}@{row.version} already has a different signature named {up.filename!r}",
                    subject=up.filename,
                )
            new.append(up)
        if len(row.signatures) + len(new) > MAX_SIGNATURES_PER_VERSION:
            raise PolicyViolationError(
                f"{row.package.name}@{row.version} may carry at most {MAX_SIGNATURES_PER_VERSION} signatures",
                subject=f"{row.package.name}@{row.version}",
            )
        if not new:
            return self._index(row, row.package.name), False
        row.signatures.extend(self._signature_rows(new, publisher))
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            raise ConflictError("a signature was added concurrently; retry", subject=row.package.name) from None
        self.generation += 1
        return self._index(row, row.package.name), False

    def _signature_rows(self, signatures: Sequence[SignatureUpload], publisher: Publisher) -> list[Signature]:
        names = [sig.filename for sig in signatures]
        if len(set(names)) != len(names):
            raise ConflictError("two signatures share one file name", subject=names[0])
        rows = []
        for sig in signatures:
            path = self.blobs.promote(sig.sha256) if not self.blobs.has(sig.sha256) else self.blobs.path(sig.sha256)
            with contextlib.suppress(FileNotFoundError):
                self.blobs.staged_path(sig.sha256).unlink()
            rows.append(
                Signature(filename=sig.filename, sha256=sig.sha256, size=staged_size(path), publisher=publisher.name)
            )
        return rows

    def _signature_bytes(self, sha256: str) -> bytes:
        path = self.blobs.staged_path(sha256)
        if not path.is_file():
            path = self.blobs.path(sha256)
        return read_bounded(path, MAX_SIGNATURE_SIZE, what="signature")

    def _staged(self, sha256: str, *, max_size: int, what: str) -> Path | None:
        path = self.blobs.staged_path(sha256)
        if not path.is_file():
            return None
        if path.stat().st_size > max_size:
            raise MalformedError(f"{what} is larger than {max_size} bytes", subject=what)
        return path

    def _staged_or_stored(self, sha256: str, *, max_size: int, what: str) -> None:
        if self._staged(sha256, max_size=max_size, what=what) is None and not self.blobs.has(sha256):
            raise NotFoundError(f"{what}: no upload {sha256}; upload it first", subject=what)
        if self.blobs.has(sha256) and self.blobs.path(sha256).stat().st_size > max_size:
            raise MalformedError(f"{what} is larger than {max_size} bytes", subject=what)

    # -- reading ------------------------------------------------------------------------------------------------

    @staticmethod
    def _find_version(s: Session, name: str, version: str) -> PackageVersion | None:
        stmt = (
            select(PackageVersion)
            .join(Package)
            .where(Package.name_key == name_key(name), PackageVersion.version_key == Version(version).key)
            .options(selectinload(PackageVersion.signatures), selectinload(PackageVersion.package))
        )
        return s.scalars(stmt).first()

    def get_version(self, name: str, version: str) -> VersionIndex:
        with self.session() as s:
            row = self._find_version(s, name, version)
            if row is None:
                raise NotFoundError(f"{name}@{version} is not published", subject=f"{name}@{version}")
            return self._index(row, row.package.name)

    def get_package(self, name: str) -> PackageSummary:
        with self.session() as s:
            pkg = s.scalars(
                select(Package)
                .where(Package.name_key == name_key(name))
                .options(selectinload(Package.versions).selectinload(PackageVersion.signatures))
            ).first()
            if pkg is None:
                raise NotFoundError(f"no package named {name!r}", subject=name)
            return self._summary(pkg)

    def search(self, query: str = "") -> list[PackageSummary]:
        if len(query) > MAX_QUERY_LENGTH:
            raise MalformedError(f"query longer than {MAX_QUERY_LENGTH} characters", subject="q")
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.session() as s:
            stmt = (
                select(Package)
                .where(func.lower(Package.name).like(f"%{escaped}%", escape="\\"))
                .order_by(Package.name_key)
                .limit(MAX_SEARCH_RESULTS)
                .options(selectinload(Package.versions).selectinload(PackageVersion.signatures))
            )
            return [self._summary(p) for p in s.scalars(stmt)]

    def _summary(self, pkg: Package) -> PackageSummary:
        versions = sorted((v for v in pkg.versions), key=lambda v: Version(v.version), reverse=True)
        latest = latest_version([v.version for v in versions])
        newest = [v for v in versions if v.version == latest]
        signed = any(v.signatures or self.embedded_formats(v.sha256) for v in newest)
        return PackageSummary(name=pkg.name, latest=latest, versions=tuple(v.version for v in versions), signed=signed)

    # -- what a package carries ---------------------------------------------------------------------------------

    def _embedded_record(self, sha256: str) -> Path:
        return self.settings.data_dir / EMBEDDED_DIR / check_sha256(sha256)

    def _record_embedded(self, sha256: str, formats: Sequence[str]) -> None:
        path = self._embedded_record(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps({"formats": list(formats)}).encode())

    def embedded_formats(self, sha256: str) -> tuple[str, ...]:
        """The signature formats embedded in the published blob ``sha256`` (a native entry, a Dify ZIP comment).

        Recorded when the blob is published (:func:`embedded_formats` of the package); a blob published before
        this record existed is examined once, on first asking, and recorded then. Detached signatures are rows.
        """
        path = self._embedded_record(sha256)
        with contextlib.suppress(OSError, SigneryError):
            doc = load_json(read_bounded(path, 4096, what="embedded-formats record"), source=str(path))
            formats = doc.get("formats") if isinstance(doc, dict) else None
            if isinstance(formats, list) and all(isinstance(f, str) for f in formats):
                return tuple(formats)
        if not self.blobs.has(sha256):
            return ()
        found = embedded_formats(self.blobs.path(sha256))
        with contextlib.suppress(OSError):
            self._record_embedded(sha256, found)
        return found

    def _manifest_path(self, sha256: str) -> Path:
        return self.settings.data_dir / MANIFEST_DIR / check_sha256(sha256)

    def _record_manifest(self, sha256: str, manifest: PackageManifest | None) -> dict[str, Any]:
        record: dict[str, Any] = {"format": MANIFEST_RECORD_FORMAT, "kind": None}
        if manifest is not None:
            record.update(
                kind=manifest.kind,
                name=manifest.name,
                version=manifest.version,
                author=manifest.author,
                entry=manifest.entry,
                doc=json.loads(json.dumps(manifest.doc, default=str)),  # YAML dates and the like, as text
            )
            if manifest.kind == "dify":
                with contextlib.suppress(SigneryError, OSError):
                    record["dify_checksum"] = dify_checksum(self.blobs.path(sha256))
        path = self._manifest_path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(record).encode())
        return record

    def manifest_record(self, sha256: str) -> dict[str, Any]:
        """What the host protocols know of the published blob ``sha256``: its manifest's ``kind`` (``None`` when
        it has none), ``name``, ``version``, ``author``, ``entry``, the parsed ``doc``, and for Dify packages the
        daemon's ``dify_checksum``. Recorded at publish; a blob published before is read once, then recorded."""
        path = self._manifest_path(sha256)
        with contextlib.suppress(OSError, SigneryError):
            doc = load_json(read_bounded(path, 8 << 20, what="manifest record"), source=str(path))
            if isinstance(doc, dict) and doc.get("format") == MANIFEST_RECORD_FORMAT:
                return doc
        manifest: PackageManifest | None = None
        with contextlib.suppress(SigneryError, OSError):
            manifest = detect_metadata(self.blobs.path(sha256)).manifest
        return self._record_manifest(sha256, manifest)

    def all_versions(self, *, after_id: int = 0, ids: Sequence[int] = ()) -> list[tuple[int, VersionIndex]]:
        """``(row id, index)`` of every published version with a row id above ``after_id`` (or those in ``ids``)."""
        with self.session() as s:
            stmt = select(PackageVersion).options(
                selectinload(PackageVersion.signatures), selectinload(PackageVersion.package)
            )
            stmt = stmt.where(PackageVersion.id.in_(list(ids))) if ids else stmt.where(PackageVersion.id > after_id)
            return [(row.id, self._index(row, row.package.name)) for row in s.scalars(stmt.order_by(PackageVersion.id))]

    def high_water(self) -> tuple[int, int]:
        """The highest version and signature row ids: what changes when anything is published."""
        with self.session() as s:
            v = s.scalar(select(func.max(PackageVersion.id))) or 0
            g = s.scalar(select(func.max(Signature.id))) or 0
            return int(v), int(g)

    def versions_with_signatures_after(self, signature_id: int) -> list[int]:
        with self.session() as s:
            return sorted(set(s.scalars(select(Signature.version_id).where(Signature.id > signature_id))))

    def read_signature(self, sha256: str) -> bytes:
        return read_bounded(self.blobs.path(sha256), MAX_SIGNATURE_SIZE, what="signature")

    @staticmethod
    def _index(row: PackageVersion, name: str) -> VersionIndex:
        base = version_paths(name, row.version)
        sigs = tuple(
            SignatureEntry(filename=g.filename, sha256=g.sha256, size=g.size, path=f"{base}/signatures/{g.filename}")
            for g in row.signatures
        )
        return VersionIndex(
            name=name,
            version=row.version,
            filename=row.filename,
            sha256=row.sha256,
            size=row.size,
            signatures=sigs,
            published_at=_iso(row.created_at),
            download_path=f"{base}/download",
            signature_path=sigs[0].path if sigs else None,
        )


def staged_size(path: Path) -> int:
    return path.stat().st_size


def embedded_formats(package: Path) -> tuple[str, ...]:
    """The formats whose signatures ``package`` carries inside itself, by :func:`signery.formats.detect_formats`.

    Only formats that embed count: a blob has no files beside it, and detached signatures are recorded as such.
    Whether any of them verifies is not the registry's to say; a package whose signature cannot even be read
    counts as carrying none.
    """
    from ..formats import detect_formats, get_format

    try:
        return tuple(name for name in detect_formats(package) if get_format(name).embeds)
    except (SigneryError, OSError, ValueError):
        return ()


__all__ = ["RegistryStore", "SignatureUpload", "SigneryError", "TokenInfo", "embedded_formats"]
