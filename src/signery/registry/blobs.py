"""Content-addressed blob files: ``blobs/ab/abcdef...`` named by the SHA-256 of their bytes.

Uploads are streamed into a temporary file in the staging directory, hashed once while they stream, bounded in
size, fsynced and renamed to ``uploads/<sha256>``. Publishing moves a staged file into ``blobs/`` with one rename,
so a blob file is either whole or absent, and nothing half-written is ever served.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from .._internal.files import StagedFile, fsync_dir
from ..errors import EnvironmentFailure, MalformedError, TamperedError
from .naming import check_sha256


class BlobTooLargeError(MalformedError):
    """An upload went over the size bound; it was discarded."""


class CorruptBlobError(TamperedError):
    """A stored blob is missing or not the size recorded: the server's disk was changed behind its back."""


class StagedUpload:
    """An upload being streamed to disk: ``write`` chunks, then ``commit`` (or ``discard``).

    Not thread-safe; one request owns it.
    """

    def __init__(self, staging_dir: Path, *, max_size: int) -> None:
        self._file = StagedFile(staging_dir, limit=max_size, what="upload", limit_error=BlobTooLargeError)

    @property
    def size(self) -> int:
        return self._file.size

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; past ``max_size`` the upload is discarded and refused."""
        self._file.write(chunk)

    def commit(self) -> tuple[str, int]:
        """Make the staged file durable under its digest; returns ``(sha256, size)``."""
        self._file.commit()
        return self._file.sha256, self._file.size

    def discard(self) -> None:
        self._file.discard()


class BlobStore:
    """The registry's byte storage. Knows nothing of packages: digests in, files out."""

    def __init__(self, blob_dir: Path, staging_dir: Path) -> None:
        self.blob_dir = blob_dir
        self.staging_dir = staging_dir
        blob_dir.mkdir(parents=True, exist_ok=True)
        staging_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.blob_dir / sha256[:2] / sha256

    def staged_path(self, sha256: str) -> Path:
        return self.staging_dir / check_sha256(sha256)

    def stage(self, *, max_size: int) -> StagedUpload:
        return StagedUpload(self.staging_dir, max_size=max_size)

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def promote(self, sha256: str) -> Path:
        """Move a staged upload into the store (a no-op when the store already holds those bytes)."""
        target = self.path(sha256)
        staged = self.staged_path(sha256)
        if target.is_file():
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
            return target
        target.parent.mkdir(exist_ok=True)
        try:
            os.replace(staged, target)
        except FileNotFoundError:
            if not target.is_file():  # a concurrent publish of the same bytes may have moved it first
                raise EnvironmentFailure(f"staged upload {sha256} vanished", subject=sha256) from None
        fsync_dir(target.parent)
        return target

    def open_checked(self, sha256: str, *, size: int) -> Path:
        """The blob's path, after checking it exists and has the recorded size (cheap; the client checks hashes)."""
        path = self.path(sha256)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise CorruptBlobError(f"blob {sha256} is missing from the store", subject=sha256) from None
        if actual != size:
            raise CorruptBlobError(f"blob {sha256} has {actual} bytes on disk, {size} recorded", subject=sha256)
        return path

    def clean_staging(self, *, older_than: float) -> int:
        """Remove abandoned staged uploads; returns how many were removed."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in self.staging_dir.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        return removed
