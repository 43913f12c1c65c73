"""Air-gapped mirrors: one tar holding packages, all their detached signatures, and an index.

Bundle layout (an uncompressed POSIX tar, regular files only)::

    index.json                                   {"format": "signery-bundle/1", "packages": [VersionIndex...]}
    signed-index.json                            the registry's signed index, when it serves one (optional)
    packages/<name>/<version>/<filename>         the package bytes
    packages/<name>/<version>/<signature file>   each detached signature, byte for byte

A bundle is as untrusted as a registry: :func:`open_bundle` reads only regular files with safe, unique names,
bounded in count and size, and checks every file against the index's size and SHA-256 before it appears in
``dest_dir``. Signatures travel unchanged, so they verify on the far side against the local trust store.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._internal.closing import Closing
from .._internal.files import atomic_writer, staged_file
from .._internal.http import Progress
from .._internal.parse import load_json
from ..archive import check_entry_name
from ..errors import MalformedError, NotFoundError, SigneryError, TamperedError, UnsafeArchiveError
from ..keys import PublicKey
from .client import FetchedPackage, RegistryClient, download_size, land_files
from .index import VersionIndex, matching
from .signed_index import MAX_SIGNED_INDEX, SignedIndex, check_against, verify_index

BUNDLE_FORMAT = "signery-bundle/1"
MAX_BUNDLE_MEMBERS = 100_000  # inode and memory bound; a mirror of thousands of packages still fits
MAX_INDEX_SIZE = 64 << 20  # the index of a very large mirror; beyond this it is an attack on the JSON parser
SIGNED_INDEX_MEMBER = "signed-index.json"


def _member_name(index: VersionIndex, filename: str) -> str:
    return f"packages/{index.name}/{index.version}/{filename}"


def resolve_refs(client: RegistryClient, refs: Sequence[tuple[str, str | None]]) -> list[VersionIndex]:
    """The index of each (name, version-or-latest), each name@version once, in the order first asked for."""
    indexes: list[VersionIndex] = []
    seen: set[tuple[str, str]] = set()
    for name, version in refs:
        index = client.version(name, version)
        if (index.name, index.version) not in seen:
            seen.add((index.name, index.version))
            indexes.append(index)
    return indexes


def export_bundle(
    registry: str,
    refs: Sequence[tuple[str, str | None]],
    out: Path,
    *,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> list[VersionIndex]:
    """Fetch each (name, version-or-latest) with its signatures and write them, with an index, to ``out``.

    Every package is checked against the registry's index while it downloads (see :func:`fetch_package`); the
    bundle is written atomically, so ``out`` is either complete or untouched. ``progress`` is told the bytes
    downloaded as they arrive (their total: :func:`~signery.registry.client.download_size` of each index).
    """
    with RegistryClient(registry) as client:
        return export_indexes(client, resolve_refs(client, refs), out, work_dir=work_dir, progress=progress)


def export_indexes(
    client: RegistryClient,
    indexes: Sequence[VersionIndex],
    out: Path,
    *,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> list[VersionIndex]:
    """:func:`export_bundle` of indexes already looked up (:func:`resolve_refs`)."""
    exported: list[VersionIndex] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        fetched: list[tuple[VersionIndex, FetchedPackage]] = []
        for index in indexes:
            dest = Path(tmp) / f"{len(fetched)}"
            fetched.append((index, client.fetch_index(index, dest, progress=progress)))
        signed: bytes | None = None
        try:
            signed = client.signed_index()
        except NotFoundError:
            signed = None  # the registry signs no index
        with atomic_writer(Path(out)) as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            doc = {"format": BUNDLE_FORMAT, "packages": [ix.to_dict() for ix, _ in fetched]}
            _add_bytes(tar, "index.json", json.dumps(doc, indent=1).encode())
            if signed is not None:
                _add_bytes(tar, SIGNED_INDEX_MEMBER, signed)
            for index, got in fetched:
                tar.add(str(got.path), arcname=_member_name(index, index.filename), recursive=False)
                for sig in got.signatures:
                    tar.add(str(sig), arcname=_member_name(index, sig.name), recursive=False)
                exported.append(index)
    return exported


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


class Bundle(Closing):
    """A mirror bundle opened for reading: members vetted, index parsed. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._tar = tarfile.open(self.path, mode="r:")  # noqa: SIM115 - owned by this object, closed in close()
        except (tarfile.TarError, OSError) as exc:
            raise MalformedError(f"{self.path} is not a mirror bundle (plain tar): {exc}", subject=str(path)) from exc
        try:
            self._members = self._vet()
            self.packages = self._read_index()
            self.signed_index = self._read_signed_index()
        except BaseException:
            self._tar.close()
            raise

    def close(self) -> None:
        self._tar.close()

    def _vet(self) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        folded: set[str] = set()
        try:
            for count, m in enumerate(self._tar, start=1):
                if count > MAX_BUNDLE_MEMBERS:
                    raise UnsafeArchiveError(f"more than {MAX_BUNDLE_MEMBERS} members", subject=str(self.path))
                check_entry_name(m.name)
                if not m.isfile():
                    raise UnsafeArchiveError(f"bundle member {m.name!r} is not a regular file", subject=m.name)
                if m.name.casefold() in folded:
                    raise UnsafeArchiveError(f"duplicate bundle member {m.name!r}", subject=m.name)
                folded.add(m.name.casefold())
                members[m.name] = m
        except tarfile.TarError as exc:
            raise MalformedError(f"{self.path}: corrupt tar: {exc}", subject=str(self.path)) from exc
        return members

    def _read_index(self) -> list[VersionIndex]:
        info = self._members.get("index.json")
        if info is None:
            raise MalformedError(f"{self.path} has no index.json", subject=str(self.path))
        if info.size > MAX_INDEX_SIZE:
            raise UnsafeArchiveError(f"index.json is {info.size} bytes", subject="index.json")
        fh = self._tar.extractfile(info)
        assert fh is not None
        doc: Any = load_json(fh.read(MAX_INDEX_SIZE + 1), source=f"{self.path}: index.json", max_bytes=MAX_INDEX_SIZE)
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT or not isinstance(doc.get("packages"), list):
            raise MalformedError(f"{self.path}: not a {BUNDLE_FORMAT} index", subject="index.json")
        return [VersionIndex.from_dict(d) for d in doc["packages"]]

    def _read_signed_index(self) -> bytes | None:
        info = self._members.get(SIGNED_INDEX_MEMBER)
        if info is None:
            return None
        if info.size > MAX_SIGNED_INDEX:
            raise UnsafeArchiveError(f"{SIGNED_INDEX_MEMBER} is {info.size} bytes", subject=SIGNED_INDEX_MEMBER)
        fh = self._tar.extractfile(info)
        assert fh is not None
        return fh.read(MAX_SIGNED_INDEX + 1)

    def check_signed_index(self, trusted: Sequence[PublicKey], *, last_version: int = 0) -> SignedIndex:
        """Verify the registry's signed index the bundle carries (see :func:`signery.registry.signed_index.
        verify_index`) and that every package of the bundle is what it lists (``tampered`` otherwise)."""
        if self.signed_index is None:
            raise TamperedError(f"{self.path.name} carries no signed index", subject=SIGNED_INDEX_MEMBER)
        signed = verify_index(
            self.signed_index, trusted=trusted, last_version=last_version, source=f"{self.path.name}: signed index"
        )
        for index in self.packages:
            try:
                check_against(signed, index)
            except SigneryError as err:
                raise TamperedError(f"{self.path.name}: {err.message}", subject=index.ref) from None
        return signed

    def size(self) -> int:
        """The bytes of every package and signature the bundle's index lists (what an import uploads)."""
        return sum(download_size(ix) for ix in self.packages)

    def find(self, name: str, version: str | None) -> VersionIndex:
        candidates = matching(self.packages, name, version)
        if not candidates:
            raise NotFoundError(f"{name}@{version or 'latest'} is not in {self.path.name}", subject=name)
        return candidates[0]

    def extract(self, index: VersionIndex, dest_dir: Path) -> FetchedPackage:
        """Copy one package and its signatures out, each checked against the index, all-or-nothing."""
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        return land_files(
            index,
            dest_dir,
            lambda name, sha256, size: self._copy_out(_member_name(index, name), sha256, size, dest_dir),
        )

    def _copy_out(self, member: str, sha256: str, size: int, dest_dir: Path) -> Path:
        info = self._members.get(member)
        if info is None:
            raise TamperedError(f"{self.path.name} lacks {member}, which its index lists", subject=member)
        if info.size != size:
            raise TamperedError(f"{member} is {info.size} bytes, the index says {size}", subject=member)
        src = self._tar.extractfile(info)
        assert src is not None
        with staged_file(dest_dir, sha256=sha256, size=size, what=member, announced_by="the bundle index") as out:
            out.copy_from(src)
        return out.path


def open_bundle(
    bundle: Path,
    name: str,
    version: str | None,
    dest_dir: Path,
    *,
    index_keys: Sequence[PublicKey] = (),
) -> FetchedPackage:
    """Take ``name@version`` (latest when None) and its signatures out of a mirror bundle into ``dest_dir``.

    For air-gapped ``install --from bundle.tar``: the result is checked against the bundle's index; verify it with
    the local trust store before trusting it. With ``index_keys`` the bundle's signed index must be signed by one of
    them, unexpired, and list every package exactly as the bundle holds it (:meth:`Bundle.check_signed_index`).

    Raises:
        UnsafeArchiveError: links, traversal, duplicates or oversized members in the bundle.
        TamperedError: a file differs from the bundle's index.
        NotFoundError: the bundle does not hold that package.
    """
    with Bundle(bundle) as b:
        if index_keys:
            b.check_signed_index(index_keys)
        return b.extract(b.find(name, version), dest_dir)


def import_bundle(
    bundle: Path, registry: str, *, token: str, progress: Progress | None = None
) -> list[tuple[VersionIndex, bool]]:
    """Publish every package of a bundle, with all its signatures, to ``registry``.

    ``progress`` is told the bytes uploaded as they go (their total: :meth:`Bundle.size`).
    """
    with Bundle(bundle) as b, RegistryClient(registry, token=token) as client:
        return import_packages(b, client, progress=progress)


def import_packages(
    bundle: Bundle, client: RegistryClient, *, progress: Progress | None = None
) -> list[tuple[VersionIndex, bool]]:
    """:func:`import_bundle` of a bundle already open, to a registry already connected."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, index in enumerate(bundle.packages):
            got = bundle.extract(index, Path(tmp) / str(i))
            results.append(
                client.publish(
                    got.path, signatures=got.signatures, name=index.name, version=index.version, progress=progress
                )
            )
    return results


__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "export_bundle",
    "export_indexes",
    "import_bundle",
    "import_packages",
    "open_bundle",
    "resolve_refs",
]
