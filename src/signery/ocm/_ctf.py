"""Common transport archives (CTF, directory form): ``artifact-index.json`` plus content-addressed ``blobs/``
holding OCI manifests whose first layer carries the descriptor. Reading one (:class:`TransportArchive`,
:class:`CtfComponentVersion`), writing one (:func:`write_transport_archive`), and adding a component version to
one (:func:`add_component_version`, what :func:`signery.ocm.archive.transfer` does for each version it copies).
:mod:`signery.ocm.archive` re-exports the public names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .._fs import atomic_write_bytes
from .._internal.parse import load_json
from ..errors import ConflictError, MalformedError, UnsafeArchiveError, UsageError
from ._layout import (
    _DIGEST,
    BLOBS_DIR,
    CTF_INDEX,
    CTF_REPOSITORY_PREFIX,
    DESCRIPTOR_FILE,
    MAX_INDEX_BYTES,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    MEDIA_CONFIG,
    MEDIA_DESCRIPTOR_TAR,
    MEDIA_MANIFEST,
    ComponentVersion,
    _blob_file_name,
    _member_name,
    _read_file,
    _stream_file,
    local_reference,
)
from .descriptor import MAX_DESCRIPTOR_BYTES, Descriptor, parse_descriptor


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

    def write_blob_stream(self, chunks: Iterable[bytes]) -> dict[str, Any]:
        """Like :meth:`write_blob` for a blob of any size: streamed to a temporary file, hashed, then renamed."""
        import tempfile

        blobs = self.path / BLOBS_DIR
        blobs.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        fd, name = tempfile.mkstemp(prefix=".blob-", suffix=".tmp", dir=blobs)
        tmp = Path(name)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            path = self.blob_path(digest)
            if path.exists():
                tmp.unlink()
            else:
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return {"digest": digest, "size": size}

    def add_artifact(self, artifact: dict[str, Any]) -> None:
        """Append ``artifact`` to the index, written atomically (the blobs it names must be written first)."""
        self._artifacts.append(artifact)
        self._index["artifacts"] = self._artifacts
        atomic_write_bytes(self.path / CTF_INDEX, json.dumps(self._index, indent=None).encode())

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


def _write_descriptor(ctf: TransportArchive, descriptor: Descriptor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write ``descriptor`` as a one-file tar layer, then the config naming that layer; return both references."""
    layer = {"mediaType": MEDIA_DESCRIPTOR_TAR, **ctf.write_blob(_tar_with(DESCRIPTOR_FILE, descriptor.dump()))}
    config = {"mediaType": MEDIA_CONFIG, **ctf.write_blob(json.dumps({"componentDescriptorLayer": layer}).encode())}
    return layer, config


def _write_manifest(ctf: TransportArchive, descriptor: Descriptor, blobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``descriptor``'s layer, config and manifest (the descriptor layer first, then ``blobs``, written
    already); return the index artifact naming the manifest."""
    layer, config = _write_descriptor(ctf, descriptor)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": [layer, *blobs]}
    stored = ctf.write_blob(json.dumps(manifest).encode())
    return {
        "repository": CTF_REPOSITORY_PREFIX + descriptor.name,
        "tag": descriptor.version,
        "digest": stored["digest"],
        "mediaType": MEDIA_MANIFEST,
    }


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
        layer, config = _write_descriptor(self.ctf, self.descriptor)
        layers = [
            layer if isinstance(entry, dict) and entry.get("digest") == self._descriptor_digest else entry
            for entry in self._manifest["layers"]
        ]
        manifest = dict(self._manifest, config=config, layers=layers)
        ref = self.ctf.write_blob(json.dumps(manifest).encode())
        self.ctf.set_artifact_digest(self._i, ref["digest"])
        self._manifest, self._descriptor_digest = manifest, layer["digest"]


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
        artifacts.append(_write_manifest(ctf, descriptor, blob_layers))
    atomic_write_bytes(path / CTF_INDEX, json.dumps({"schemaVersion": 1, "artifacts": artifacts}).encode())
    return path


def _digest_reference(reference: str) -> str | None:
    """``sha256:HEX`` for a reference that is a sha256 blob digest (``sha256:HEX`` or ``sha256.HEX``), else None."""
    name = reference.replace(".", ":", 1) if reference.startswith("sha256.") else reference
    return name if re.fullmatch(r"sha256:[0-9a-f]{64}", name) else None


def create_transport_archive(path: Path) -> TransportArchive:
    """The CTF directory at ``path``, created (empty) when missing; an existing directory must be a CTF or empty."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a transport archive directory", subject=str(path))
    if not (path / CTF_INDEX).exists():
        if path.exists() and any(path.iterdir()):
            raise UsageError(
                f"{path} is neither a common transport archive (no {CTF_INDEX}) nor empty", subject=str(path)
            )
        (path / BLOBS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path / CTF_INDEX, json.dumps({"schemaVersion": 1, "artifacts": []}).encode())
    return TransportArchive(path)


def add_component_version(ctf: TransportArchive, cv: ComponentVersion) -> bool:
    """Copy ``cv`` (its descriptor with every signature, and its local blobs) into ``ctf``.

    A local blob whose reference is not its sha256 digest gets that digest as its ``localReference`` (how a CTF
    addresses blobs); no normalisation covers ``access``, so signatures are unaffected. Returns ``False`` when
    the same descriptor is there already (nothing is written).

    Raises:
        ConflictError: ``ctf`` holds another descriptor for this name and version.
        UnsafeArchiveError: a blob named by its digest does not match it.
    """
    desc = cv.descriptor.copy()
    identity = desc.identity
    existing = ctf.lookup(desc.name, desc.version)
    layers: list[dict[str, Any]] = []
    written: dict[str, str] = {}
    for item in desc.resources:
        ref = local_reference(item.get("access"))
        if ref is None:
            continue
        if ref not in written:
            _blob_file_name(ref)  # a path-like reference is refused before anything is read
            blob = ctf.write_blob_stream(cv.open_blob(ref))
            expected = _digest_reference(ref)
            if expected is not None and expected != blob["digest"]:
                raise UnsafeArchiveError(f"{cv.location}: local blob {ref} does not match its digest", subject=ref)
            written[ref] = blob["digest"]
            access = item["access"]
            media = access.get("mediaType") if isinstance(access.get("mediaType"), str) else None
            layers.append({"mediaType": media or "application/octet-stream", **blob})
        if _digest_reference(ref) is None:
            item["access"]["localReference"] = written[ref]
    if existing is not None:
        if existing.descriptor.raw == desc.raw:
            return False
        raise ConflictError(
            f"{ctf.path} already holds {identity} with another descriptor; refusing to overwrite it",
            subject=identity,
            hint="transfer into another transport archive, or remove that version first",
        )
    unique = list({entry["digest"]: entry for entry in layers}.values())
    ctf.add_artifact(_write_manifest(ctf, desc, unique))
    return True
