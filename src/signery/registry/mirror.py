"""Air-gapped mirrors: one tar holding packages, all their detached signatures, and an index.

Bundle layout (an uncompressed POSIX tar, regular files only)::

    index.json                                   {"format": "signery-bundle/1", "packages": [VersionIndex...]}
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

from .._internal.files import atomic_writer, staged_file
from ..archive import check_entry_name
from ..errors import MalformedError, NotFoundError, TamperedError, UnsafeArchiveError
from .client import FetchedPackage, RegistryClient, land_files
from .index import VersionIndex
from .naming import Version, latest_version

BUNDLE_FORMAT = "signery-bundle/1"
MAX_BUNDLE_MEMBERS = 100_000  # inode and memory bound; a mirror of thousands of packages still fits
MAX_INDEX_SIZE = 64 << 20  # the index of a very large mirror; beyond this it is an attack on the JSON parser


def _member_name(index: VersionIndex, filename: str) -> str:
    return f"packages/{index.name}/{index.version}/{filename}"


def export_bundle(
    registry: str, refs: Sequence[tuple[str, str | None]], out: Path, *, work_dir: Path | None = None
) -> list[VersionIndex]:
    """Fetch each (name, version-or-latest) with its signatures and write them, with an index, to ``out``.

    Every package is checked against the registry's index while it downloads (see :func:`fetch_package`); the
    bundle is written atomically, so ``out`` is either complete or untouched.
    """
    exported: list[VersionIndex] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, RegistryClient(registry) as client:
        fetched: list[tuple[VersionIndex, FetchedPackage]] = []
        seen: set[tuple[str, str]] = set()
        for name, version in refs:
            index = client.version(name, version)
            if (index.name, index.version) in seen:
                continue
            seen.add((index.name, index.version))
            dest = Path(tmp) / f"{len(fetched)}"
            fetched.append((index, client.fetch(index.name, index.version, dest)))
        with atomic_writer(Path(out)) as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            doc = {"format": BUNDLE_FORMAT, "packages": [ix.to_dict() for ix, _ in fetched]}
            _add_bytes(tar, "index.json", json.dumps(doc, indent=1).encode())
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


class Bundle:
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
        except BaseException:
            self._tar.close()
            raise

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

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
        try:
            doc: Any = json.loads(fh.read(MAX_INDEX_SIZE + 1))
        except ValueError as exc:
            raise MalformedError(f"{self.path}: index.json is not JSON", subject="index.json") from exc
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT or not isinstance(doc.get("packages"), list):
            raise MalformedError(f"{self.path}: not a {BUNDLE_FORMAT} index", subject="index.json")
        return [VersionIndex.from_dict(d) for d in doc["packages"]]

    def find(self, name: str, version: str | None) -> VersionIndex:
        candidates = [ix for ix in self.packages if ix.name.lower() == name.lower()]
        if version is None:
            latest = latest_version([ix.version for ix in candidates])
            candidates = [ix for ix in candidates if ix.version == latest]
        else:
            candidates = [ix for ix in candidates if Version(ix.version).key == Version(version).key]
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


def open_bundle(bundle: Path, name: str, version: str | None, dest_dir: Path) -> FetchedPackage:
    """Take ``name@version`` (latest when None) and its signatures out of a mirror bundle into ``dest_dir``.

    For air-gapped ``install --from bundle.tar``: the result is checked against the bundle's index only; verify
    it with the local trust store before trusting it.

    Raises:
        UnsafeArchiveError: links, traversal, duplicates or oversized members in the bundle.
        TamperedError: a file differs from the bundle's index.
        NotFoundError: the bundle does not hold that package.
    """
    with Bundle(bundle) as b:
        return b.extract(b.find(name, version), dest_dir)


def import_bundle(bundle: Path, registry: str, *, token: str) -> list[tuple[VersionIndex, bool]]:
    """Publish every package of a bundle, with all its signatures, to ``registry``."""
    results = []
    with Bundle(bundle) as b, RegistryClient(registry, token=token) as client, tempfile.TemporaryDirectory() as tmp:
        for i, index in enumerate(b.packages):
            got = b.extract(index, Path(tmp) / str(i))
            results.append(client.publish(got.path, signatures=got.signatures, name=index.name, version=index.version))
    return results


__all__ = ["BUNDLE_FORMAT", "Bundle", "export_bundle", "import_bundle", "open_bundle"]
