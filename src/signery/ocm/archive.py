"""Where component versions live: a component archive (directory or tar, ``component-descriptor.yaml`` plus
``blobs/``) and a common transport archive (CTF, directory form: ``artifact-index.json`` plus content-addressed
``blobs/`` holding OCI manifests whose first layer carries the descriptor).

Every path inside an archive is checked before use: blob names are single plain file names, tar members are
regular files or directories without ``..`` or absolute paths, duplicates and links are refused, and sizes and
counts are bounded. Every descriptor (directory, tar member, CTF layer) is size-checked before it is read and
parsed once, by :func:`~signery.ocm.descriptor.parse_descriptor`; the CTF's JSON (index, manifests, configs) goes
through the shared bounded JSON parser, so a hostile archive is ``malformed`` naming the file, never a traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._fs import atomic_write_bytes, atomic_writer
from .._internal.parse import load_json
from ..errors import MalformedError, UnsafeArchiveError, UsageError
from .descriptor import MAX_DESCRIPTOR_BYTES, Descriptor, parse_descriptor

DESCRIPTOR_FILE = "component-descriptor.yaml"
BLOBS_DIR = "blobs"
CTF_INDEX = "artifact-index.json"
CTF_REPOSITORY_PREFIX = "component-descriptors/"
MAX_TAR_MEMBERS = 100_000  # zip/tar bombs: a component archive holds one file per resource
MAX_INDEX_BYTES = 16 << 20  # an artifact index lists versions; megabytes of it is not a CTF
MAX_MANIFEST_BYTES = 4 << 20  # an OCI manifest is a few KiB
MAX_JSON_DEPTH = 16  # index, manifest and config nest three or four levels
CHUNK = 1 << 20

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.ocm.software.component.config.v1+json"
MEDIA_DESCRIPTOR_TAR = "application/vnd.ocm.software.component-descriptor.v2+yaml+tar"
LOCAL_BLOB_TYPES = ("localBlob", "LocalBlob", "localBlob/v1")

_BLOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$")


def _blob_file_name(reference: str) -> str:
    """``sha256:abc`` and ``sha256.abc`` both name the file ``sha256.abc``; anything path-like is refused."""
    name = reference.replace(":", ".", 1) if ":" in reference else reference
    if not _BLOB_NAME.fullmatch(name) or ".." in name:
        raise UnsafeArchiveError(f"local blob reference {reference!r} is not a plain blob name", subject=reference)
    return name


def local_reference(access: Any) -> str | None:
    """The ``localReference`` of a local blob access, or None for other access types."""
    if isinstance(access, dict) and access.get("type") in LOCAL_BLOB_TYPES:
        ref = access.get("localReference")
        if not isinstance(ref, str) or not ref:
            raise MalformedError("localBlob access without localReference", subject="access.localReference")
        return ref
    return None


class ComponentVersion(Protocol):
    """One component version: its descriptor, its local blobs, and a way to write the descriptor back."""

    descriptor: Descriptor
    location: str

    def open_blob(self, reference: str) -> Iterator[bytes]: ...

    def save(self) -> None: ...


class Repository(Protocol):
    def lookup(self, name: str, version: str) -> ComponentVersion | None: ...


def _read_file(path: Path, limit: int, what: str) -> bytes:
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise MalformedError(f"{what} {path} is missing", subject=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeArchiveError(f"{what} {path} is not a regular file", subject=str(path))
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise MalformedError(f"{what} {path} is larger than {limit} bytes", subject=str(path))
    return data


def _stream_file(path: Path, reference: str) -> Iterator[bytes]:
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise MalformedError(f"local blob {reference} is missing from the archive", subject=reference) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeArchiveError(f"local blob {reference} is not a regular file", subject=reference)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


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


def _member_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or any(p == ".." for p in parts) or "\\" in name:
        raise UnsafeArchiveError(f"tar member {name!r} escapes the archive", subject=name)
    return "/".join(parts)


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


@dataclass
class _CtfEntry:
    index: int
    manifest: dict[str, Any]


class TransportArchive:
    """A common transport archive (directory form) holding many component versions."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        index_path = self.path / CTF_INDEX
        raw = _read_file(index_path, MAX_INDEX_BYTES, "artifact index")
        index = load_json(raw, source=str(index_path), max_depth=MAX_JSON_DEPTH)
        if not isinstance(index, dict):
            raise MalformedError(f"{index_path} is not a JSON artifact index", subject=str(index_path))
        self._index: dict[str, Any] = index
        artifacts = index.get("artifacts") or []
        if not isinstance(artifacts, list):
            raise MalformedError(f"{index_path}: artifacts must be a list", subject=str(index_path))
        self._artifacts: list[dict[str, Any]] = [a for a in artifacts if isinstance(a, dict)]

    def versions(self) -> list[tuple[str, str]]:
        out = []
        for a in self._artifacts:
            repo, tag = a.get("repository"), a.get("tag")
            if isinstance(repo, str) and repo.startswith(CTF_REPOSITORY_PREFIX) and isinstance(tag, str):
                out.append((repo[len(CTF_REPOSITORY_PREFIX) :], tag))
        return out

    def blob_path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise MalformedError(f"{self.path}: {digest!r} is not a blob digest", subject=str(digest))
        return self.path / BLOBS_DIR / _blob_file_name(digest)

    def read_blob(self, digest: str, limit: int) -> bytes:
        data = _read_file(self.blob_path(digest), limit, "blob")
        algo, _, hexval = digest.partition(":")
        if hashlib.new(algo, data).hexdigest() != hexval:
            raise UnsafeArchiveError(f"{self.path}: blob {digest} does not match its digest", subject=digest)
        return data

    def write_blob(self, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            atomic_write_bytes(path, data)
        return {"digest": digest, "size": len(data)}

    def lookup(self, name: str, version: str) -> CtfComponentVersion | None:
        for i, a in enumerate(self._artifacts):
            if a.get("repository") == CTF_REPOSITORY_PREFIX + name and a.get("tag") == version:
                return CtfComponentVersion(self, i)
        return None

    def artifact(self, i: int) -> dict[str, Any]:
        return self._artifacts[i]

    def set_artifact_digest(self, i: int, digest: str) -> None:
        self._artifacts[i]["digest"] = digest
        self._index["artifacts"] = self._artifacts
        atomic_write_bytes(self.path / CTF_INDEX, json.dumps(self._index, indent=None).encode())


def _tar_with(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _descriptor_from_layer(data: bytes, media_type: str, where: str) -> bytes:
    if not media_type.endswith("+tar"):
        return data
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for member in tf:
                if _member_name(member.name) == DESCRIPTOR_FILE and member.isreg():
                    fh = tf.extractfile(member)
                    assert fh is not None
                    return fh.read(MAX_DESCRIPTOR_BYTES + 1)
    except tarfile.TarError as exc:
        raise MalformedError(f"{where}: descriptor layer is not a tar: {exc}", subject=where) from None
    raise MalformedError(f"{where}: descriptor layer holds no {DESCRIPTOR_FILE}", subject=where)


class CtfComponentVersion:
    """One component version inside a :class:`TransportArchive`."""

    def __init__(self, ctf: TransportArchive, i: int) -> None:
        self.ctf, self._i = ctf, i
        art = ctf.artifact(i)
        where = f"{ctf.path}:{art.get('repository')}:{art.get('tag')}"
        self.location = where
        manifest = self._json_blob(str(art.get("digest")), where, "manifest")
        layers, config_ref = manifest.get("layers"), manifest.get("config")
        if not isinstance(layers, list) or not layers:
            raise MalformedError(f"{where}: manifest has no layers", subject=where)
        if not isinstance(config_ref, dict):
            raise MalformedError(f"{where}: not an OCM component version manifest (no config)", subject=where)
        config = self._json_blob(str(config_ref.get("digest")), where, "config")
        layer = config.get("componentDescriptorLayer")
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            raise MalformedError(f"{where}: config names no component descriptor layer", subject=where)
        self._manifest: dict[str, Any] = manifest
        self._layer_media = str(layer.get("mediaType", MEDIA_DESCRIPTOR_TAR))
        data = ctf.read_blob(layer["digest"], MAX_DESCRIPTOR_BYTES * 2)
        self.descriptor = parse_descriptor(_descriptor_from_layer(data, self._layer_media, where), source=where)
        self._descriptor_digest: str = layer["digest"]

    def _json_blob(self, digest: str, where: str, what: str) -> dict[str, Any]:
        source = f"{where}: {what} {digest}"
        doc = load_json(self.ctf.read_blob(digest, MAX_MANIFEST_BYTES), source=source, max_depth=MAX_JSON_DEPTH)
        if not isinstance(doc, dict):
            raise MalformedError(f"{source}: not a JSON object", subject=source)
        return doc

    def open_blob(self, reference: str) -> Iterator[bytes]:
        path = self.ctf.blob_path(reference if ":" in reference else reference.replace(".", ":", 1))
        return _stream_file(path, reference)

    def save(self) -> None:
        layer_bytes = _tar_with(DESCRIPTOR_FILE, self.descriptor.dump())
        layer = {"mediaType": MEDIA_DESCRIPTOR_TAR, **self.ctf.write_blob(layer_bytes)}
        config = {
            "mediaType": MEDIA_CONFIG,
            **self.ctf.write_blob(json.dumps({"componentDescriptorLayer": layer}).encode()),
        }
        layers = [
            layer if isinstance(entry, dict) and entry.get("digest") == self._descriptor_digest else entry
            for entry in self._manifest["layers"]
        ]
        manifest = dict(self._manifest, config=config, layers=layers)
        ref = self.ctf.write_blob(json.dumps(manifest).encode())
        self.ctf.set_artifact_digest(self._i, ref["digest"])
        self._manifest, self._descriptor_digest = manifest, layer["digest"]


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


def write_transport_archive(path: Path, versions: list[tuple[Descriptor, dict[str, bytes]]]) -> Path:
    """Create a CTF directory holding the given component versions and their local blobs.

    Local blob references must be ``sha256:<hex>`` digests of the blob bytes (that is how a CTF addresses them).
    """
    path = Path(path)
    (path / BLOBS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / CTF_INDEX, json.dumps({"schemaVersion": 1, "artifacts": []}).encode())
    artifacts = []
    for descriptor, blobs in versions:
        ctf = TransportArchive(path)
        blob_layers = []
        for ref, data in blobs.items():
            written = ctf.write_blob(data)
            if written["digest"] != ref:
                raise UsageError(f"blob reference {ref} is not the sha256 digest of its bytes", subject=ref)
            blob_layers.append({"mediaType": "application/octet-stream", **written})
        layer = {"mediaType": MEDIA_DESCRIPTOR_TAR, **ctf.write_blob(_tar_with(DESCRIPTOR_FILE, descriptor.dump()))}
        config = {"mediaType": MEDIA_CONFIG, **ctf.write_blob(json.dumps({"componentDescriptorLayer": layer}).encode())}
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": [layer, *blob_layers]}
        written_manifest = ctf.write_blob(json.dumps(manifest).encode())
        artifacts.append(
            {
                "repository": CTF_REPOSITORY_PREFIX + descriptor.name,
                "tag": descriptor.version,
                "digest": written_manifest["digest"],
                "mediaType": MEDIA_MANIFEST,
            }
        )
    atomic_write_bytes(path / CTF_INDEX, json.dumps({"schemaVersion": 1, "artifacts": artifacts}).encode())
    return path
