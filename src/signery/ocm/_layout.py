"""The layout every OCM archive shares: file names, limits and media types, blob names, the checked reads, and
the protocols of a component version and a repository. :mod:`signery.ocm.archive` re-exports the public names.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ..errors import MalformedError, UnsafeArchiveError
from .descriptor import Descriptor

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


def _member_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or any(p == ".." for p in parts) or "\\" in name:
        raise UnsafeArchiveError(f"tar member {name!r} escapes the archive", subject=name)
    return "/".join(parts)
