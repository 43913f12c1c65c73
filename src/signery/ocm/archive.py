"""Where component versions live: a component archive (directory or tar, ``component-descriptor.yaml`` plus
``blobs/``) and a common transport archive (CTF, directory form: ``artifact-index.json`` plus content-addressed
``blobs/`` holding OCI manifests whose first layer carries the descriptor).

Every path inside an archive is checked before use: blob names are single plain file names, tar members are
regular files or directories without ``..`` or absolute paths, duplicates and links are refused, and sizes and
counts are bounded. Every descriptor (directory, tar member, CTF layer) is size-checked before it is read and
parsed once, by :func:`~signery.ocm.descriptor.parse_descriptor`; the CTF's JSON (index, manifests, configs) goes
through the shared bounded JSON parser, so a hostile archive is ``malformed`` naming the file, never a traceback.

The archives' shared layout is :mod:`signery.ocm._layout`, transport archives are :mod:`signery.ocm._ctf`; this
module re-exports both and opens whatever a path holds.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zlib import error as zlib_error

from .._fs import atomic_write_bytes, atomic_writer
from ..errors import MalformedError, UnsafeArchiveError, UsageError
from ._ctf import CtfComponentVersion as CtfComponentVersion
from ._ctf import TransportArchive as TransportArchive
from ._ctf import add_component_version as add_component_version
from ._ctf import create_transport_archive as create_transport_archive
from ._ctf import write_transport_archive as write_transport_archive
from ._layout import BLOBS_DIR as BLOBS_DIR
from ._layout import CHUNK as CHUNK
from ._layout import CTF_INDEX as CTF_INDEX
from ._layout import CTF_REPOSITORY_PREFIX as CTF_REPOSITORY_PREFIX
from ._layout import DESCRIPTOR_FILE as DESCRIPTOR_FILE
from ._layout import LOCAL_BLOB_TYPES as LOCAL_BLOB_TYPES
from ._layout import MAX_INDEX_BYTES as MAX_INDEX_BYTES
from ._layout import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from ._layout import MAX_MANIFEST_BYTES as MAX_MANIFEST_BYTES
from ._layout import MAX_TAR_MEMBERS as MAX_TAR_MEMBERS
from ._layout import MEDIA_CONFIG as MEDIA_CONFIG
from ._layout import MEDIA_DESCRIPTOR_TAR as MEDIA_DESCRIPTOR_TAR
from ._layout import MEDIA_MANIFEST as MEDIA_MANIFEST
from ._layout import ComponentVersion as ComponentVersion
from ._layout import Repository as Repository
from ._layout import _blob_file_name, _member_name, _read_file, _stream_file
from ._layout import local_reference as local_reference
from .descriptor import MAX_DESCRIPTOR_BYTES, Descriptor, parse_descriptor


class DirectoryComponentArchive:
    """A component archive directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        data = _read_file(self.path / DESCRIPTOR_FILE, MAX_DESCRIPTOR_BYTES, "descriptor")
        self.descriptor = parse_descriptor(data, source=str(self.path / DESCRIPTOR_FILE))

    def open_blob(self, reference: str) -> Iterator[bytes]:
        return _stream_file(self.path / BLOBS_DIR / _blob_file_name(reference), reference)

    def save(self) -> None:
        atomic_write_bytes(self.path / DESCRIPTOR_FILE, self.descriptor.dump())


class TarComponentArchive:
    """A component archive packed as a tar (optionally gzip-compressed); signing rewrites it atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._load()

    def _load(self, *, parse: bool = True) -> None:
        """Index the members; with ``parse``, also read and parse the descriptor (once)."""
        path = self.path
        with self.path.open("rb") as fh:
            self._gzip = fh.read(2) == b"\x1f\x8b"
        self._members: dict[str, tarfile.TarInfo] = {}
        with self._open() as tf:
            for count, member in enumerate(tf):
                if count >= MAX_TAR_MEMBERS:
                    raise UnsafeArchiveError(f"{path}: more than {MAX_TAR_MEMBERS} entries", subject=str(path))
                name = _member_name(member.name)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise UnsafeArchiveError(f"tar member {member.name!r} is a link or device", subject=member.name)
                if name in self._members:
                    raise UnsafeArchiveError(f"tar member {name!r} appears twice", subject=name)
                self._members[name] = member
            if DESCRIPTOR_FILE not in self._members:
                raise MalformedError(f"{path}: no {DESCRIPTOR_FILE} in the archive", subject=DESCRIPTOR_FILE)
            if not parse:
                return
            source = f"{path}:{DESCRIPTOR_FILE}"
            info = self._members[DESCRIPTOR_FILE]
            if info.size > MAX_DESCRIPTOR_BYTES:
                raise MalformedError(
                    f"{source}: descriptor larger than {MAX_DESCRIPTOR_BYTES} bytes ({info.size})", subject=source
                )
            fh2 = tf.extractfile(info)
            assert fh2 is not None
            data = fh2.read(MAX_DESCRIPTOR_BYTES + 1)
        self.descriptor = parse_descriptor(data, source=source)

    def _open(self) -> tarfile.TarFile:
        try:
            return tarfile.open(self.path, mode="r:gz" if self._gzip else "r:")
        except tarfile.TarError as exc:
            raise MalformedError(f"{self.path}: not a tar archive: {exc}", subject=str(self.path)) from None

    def open_blob(self, reference: str) -> Iterator[bytes]:
        name = f"{BLOBS_DIR}/{_blob_file_name(reference)}"
        if name not in self._members:
            raise MalformedError(f"local blob {reference} is missing from the archive", subject=reference)
        return self._stream(name)

    def _stream(self, name: str) -> Iterator[bytes]:
        with self._open() as tf:
            fh = tf.extractfile(self._members[name])
            assert fh is not None
            while chunk := fh.read(CHUNK):
                yield chunk

    def save(self) -> None:
        data = self.descriptor.dump()
        with atomic_writer(self.path) as out:
            gz = gzip.GzipFile(fileobj=out, mode="wb", mtime=0) if self._gzip else None
            target: Any = gz if gz is not None else out
            with self._open() as src, tarfile.open(fileobj=target, mode="w", format=tarfile.PAX_FORMAT) as dst:
                for name, member in self._members.items():
                    if name == DESCRIPTOR_FILE:
                        continue
                    fh = src.extractfile(member)
                    dst.addfile(member, fh)
                info = tarfile.TarInfo(DESCRIPTOR_FILE)
                info.size, info.mode = len(data), 0o644
                dst.addfile(info, io.BytesIO(data))
            if gz is not None:
                gz.close()
        self._load(parse=False)  # the member table describes the old file; the descriptor is what we wrote


class Repositories:
    """Look a component version up in several places, first match wins."""

    def __init__(self, *repos: Repository) -> None:
        self._repos = repos

    def lookup(self, name: str, version: str) -> ComponentVersion | None:
        for repo in self._repos:
            found = repo.lookup(name, version)
            if found is not None:
                return found
        return None


def open_component_version(path: Path, *, component: str | None = None) -> tuple[ComponentVersion, Repositories]:
    """Open ``path`` (component archive directory or tar, or CTF directory) at one component version.

    ``component`` (``name`` or ``name:version``) picks the version inside a CTF; it is needed only when the CTF
    holds more than one candidate. The returned repository resolves references (the CTF itself, if any).
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist", subject=str(path))
    if path.is_file():
        return TarComponentArchive(path), Repositories()
    if (path / DESCRIPTOR_FILE).exists():
        return DirectoryComponentArchive(path), Repositories()
    if not (path / CTF_INDEX).exists():
        raise UsageError(
            f"{path} is neither a component archive nor a common transport archive "
            f"(no {DESCRIPTOR_FILE} or {CTF_INDEX})",
            subject=str(path),
        )
    ctf = TransportArchive(path)
    candidates = ctf.versions()
    if component:
        name, _, version = component.partition(":")
        candidates = [c for c in candidates if c[0] == name and (not version or c[1] == version)]
    if len(candidates) != 1:
        listing = ", ".join(f"{n}:{v}" for n, v in ctf.versions()) or "none"
        what = "matches" if component else "component versions in the archive"
        raise UsageError(
            f"{path}: {len(candidates)} {what}; pick one with --component NAME:VERSION (present: {listing})",
            subject="--component",
        )
    found = ctf.lookup(*candidates[0])
    assert found is not None
    return found, Repositories(ctf)


def open_repository(path: Path) -> TransportArchive:
    path = Path(path)
    if not (path / CTF_INDEX).exists():
        raise UsageError(f"{path} is not a common transport archive (no {CTF_INDEX})", subject=str(path))
    return TransportArchive(path)


def write_component_archive(path: Path, descriptor: Descriptor, blobs: dict[str, bytes], *, tar: bool = False) -> Path:
    """Create a component archive (directory, or tar when ``tar``) from a descriptor and its local blobs."""
    path = Path(path)
    if tar:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name, data in [(DESCRIPTOR_FILE, descriptor.dump())] + [
                (f"{BLOBS_DIR}/{_blob_file_name(ref)}", blob) for ref, blob in blobs.items()
            ]:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
        atomic_write_bytes(path, buf.getvalue())
        return path
    (path / BLOBS_DIR).mkdir(parents=True, exist_ok=True)
    for ref, blob in blobs.items():
        atomic_write_bytes(path / BLOBS_DIR / _blob_file_name(ref), blob)
    atomic_write_bytes(path / DESCRIPTOR_FILE, descriptor.dump())
    return path


# -- what a path is, cheaply ---------------------------------------------------------------------------------------

ArchiveKind = Literal["directory", "tar", "ctf"]


def archive_kind(path: Path) -> ArchiveKind | None:
    """``directory`` or ``ctf`` for a component archive or transport archive directory, ``tar`` for a file that
    may be a (gzipped) tar, else ``None``. A stat or two and at most 512 bytes read: nothing is parsed."""
    path = Path(path)
    try:
        if path.is_dir():
            if (path / DESCRIPTOR_FILE).is_file():
                return "directory"
            return "ctf" if (path / CTF_INDEX).is_file() else None
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    return "tar" if head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar" else None


def tar_descriptor(path: Path) -> bytes | None:
    """The descriptor bytes of a component archive tar, or ``None`` when ``path`` is not one.

    Streams the tar's headers and gives up at the first member a component archive cannot hold (anything but
    ``component-descriptor.yaml`` and ``blobs/...``), so another tar (a source distribution) costs a header or two.
    """
    try:
        with Path(path).open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for count, member in enumerate(tf):
                name = "/".join(p for p in member.name.split("/") if p not in ("", "."))
                if count >= MAX_TAR_MEMBERS:
                    return None
                if name == DESCRIPTOR_FILE and member.isreg():
                    if member.size > MAX_DESCRIPTOR_BYTES:
                        return None
                    fh = tf.extractfile(member)
                    return fh.read(MAX_DESCRIPTOR_BYTES + 1) if fh is not None else None
                if name not in ("", BLOBS_DIR) and not name.startswith(BLOBS_DIR + "/"):
                    return None
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile, zlib_error):
        return None
    return None


def component_versions(path: Path) -> Iterator[tuple[ComponentVersion, Repositories]]:
    """Every component version at ``path`` (one for a component archive, each one of a CTF, in index order), each
    with the repository its references resolve from (the CTF itself)."""
    path = Path(path)
    kind = archive_kind(path)
    if kind == "ctf":
        ctf = TransportArchive(path)
        for name, version in ctf.versions():
            found = ctf.lookup(name, version)
            assert found is not None
            yield found, Repositories(ctf)
        return
    yield open_component_version(path)


# -- transfer ------------------------------------------------------------------------------------------------------


@dataclass
class Transferred:
    """What :func:`transfer` did: the versions copied, those already there, references it could not find."""

    copied: list[str]
    present: list[str]
    missing: list[str]


def transfer(source: Path, dest: Path, *, component: str | None = None) -> Transferred:
    """Copy a component version from ``source`` (component archive or CTF) into the CTF directory ``dest``
    (created when missing), with its blobs and signatures, and with every component version it references that
    ``source`` holds (recursively), so that its signatures verify in ``dest``.

    Raises:
        UsageError: ``source`` is not an archive, or ``component`` is ambiguous or absent.
        ConflictError: ``dest`` holds a different descriptor of a version being copied (nothing of it is indexed).
    """
    cv, repo = open_component_version(Path(source), component=component)
    if Path(dest).resolve() == Path(source).resolve():
        raise UsageError("source and destination are the same archive", subject=str(dest))
    ctf = create_transport_archive(Path(dest))
    done = Transferred([], [], [])
    seen: set[str] = set()
    todo: list[ComponentVersion] = [cv]
    while todo:
        current = todo.pop(0)
        identity = current.descriptor.identity
        if identity in seen:
            continue
        seen.add(identity)
        if len(seen) > MAX_TAR_MEMBERS:
            raise MalformedError(f"{source}: too many referenced component versions", subject=str(source))
        (done.copied if add_component_version(ctf, current) else done.present).append(identity)
        for item in current.descriptor.references:
            name, version = str(item.get("componentName", "")), str(item.get("version", ""))
            target = repo.lookup(name, version)
            if target is not None:
                todo.append(target)
            elif ctf.lookup(name, version) is None:
                done.missing.append(f"{name}:{version}")
    return done
