"""Files, read and written one way: bounded reads, atomic replacement, and staged writes checked while they stream.

- :func:`read_bounded` reads a small file (a key, a policy, a record) whole, refusing one over its limit after
  reading at most one byte more, so a hostile path (``/dev/zero``, a huge file) costs nothing.
- :func:`atomic_writer` replaces a file in one step: an interrupted write leaves the old file (or no file), never
  half of one.
- :class:`StagedFile` (and :func:`staged_file`) takes bytes from elsewhere (an upload, a download, a bundle, a
  package being installed) into a temporary file beside where they will live, hashing them as they stream, bounded
  in size, checked against an expected size and SHA-256, and only then renamed into place. A refusal or any other
  failure leaves nothing behind.

Temporary names start with a dot and end in ``.tmp`` or ``.part``, so listings that skip dot-files never see them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from ..errors import MalformedError, SigneryError, TamperedError, UsageError

COPY_CHUNK = 1 << 20  # bytes per read when copying: bounded memory for any file size


def read_bounded(path: Path, limit: int, *, what: str, error: type[SigneryError] = MalformedError) -> bytes:
    """The whole of the file at ``path``, which may hold at most ``limit`` bytes.

    ``what`` names the file in the message (``"policy file"``: "policy file /x is larger than 1048576 bytes").
    ``error`` is the class raised for a file over the limit: :class:`~signery.errors.MalformedError` for input,
    :class:`~signery.errors.ConfigError` for signery's own settings and state.

    Raises:
        error: the file holds more than ``limit`` bytes (named, with the limit).
        OSError: as opening or reading raises it; what a missing or unreadable file means is the caller's to say.
    """
    path = Path(path)
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {limit} bytes", subject=str(path))
    return data


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: some filesystems refuse to open directories)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = 0o644, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success it becomes ``path`` in one atomic step.

    With ``overwrite=False`` an existing ``path`` is never replaced, even by a writer racing this one.

    The temporary file is created with ``mode`` from the start (never wider), so a private key is never readable by
    others, not even for a moment. On any exception the temporary file is removed and ``path`` is untouched.
    """
    import tempfile  # imported on first write: read-only commands (verify, inspect) never pay for it

    path = Path(path)
    if not overwrite and path.exists():
        raise UsageError(f"{path} exists; refusing to overwrite it", subject=str(path), hint="use --force")
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the name exists, so "create only if absent" is one atomic step, with no window
            # between a check and the rename for another writer to slip into.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UsageError(
                    f"{path} exists; refusing to overwrite it", subject=str(path), hint="use --force"
                ) from None
            tmp.unlink()
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(
    path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o644, overwrite: bool = True
) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``."""
    with atomic_writer(path, mode=mode, overwrite=overwrite) as fh:
        fh.write(data)


class StagedFile:
    """Bytes being written into ``directory`` under a temporary name: :meth:`write` them, then :meth:`commit`.

    The bytes are hashed (SHA-256) as they arrive. ``limit`` bounds a file of unknown size (more is refused with
    ``limit_error``); ``size`` and ``sha256`` are what someone announced (more bytes, fewer bytes or other bytes are
    :class:`~signery.errors.TamperedError`, naming ``what`` and ``announced_by``). Every refusal, and
    :meth:`discard`, removes the temporary file.

    :meth:`commit` checks, makes the bytes durable and renames them to their name in ``directory``.
    :meth:`finish` checks and makes them durable but keeps the temporary name, for a caller that lands several
    files all at once (it renames them itself, or removes them).

    As a context manager (:data:`staged_file`), any exception discards the file, and a body that returns without
    committing is checked by :meth:`finish`.

    Not thread-safe; one writer owns it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        sha256: str | None = None,
        size: int | None = None,
        limit: int | None = None,
        what: str = "file",
        announced_by: str = "what was expected",
        limit_error: type[SigneryError] = MalformedError,
        mode: int = 0o600,
    ) -> None:
        import tempfile  # as in atomic_writer: only writers pay for it

        self.directory = Path(directory)
        self.what = what
        self._sha256 = sha256
        self._size = size
        self._limit = limit
        self._announced_by = announced_by
        self._limit_error = limit_error
        fd, name = tempfile.mkstemp(prefix=".staged-", suffix=".part", dir=self.directory)
        self.path = Path(name)  # the temporary path until committed, then the final one
        try:
            os.fchmod(fd, mode)
            self._fh: IO[bytes] | None = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.path.unlink()
            raise
        self._hash = hashlib.sha256()
        self.size = 0  # bytes written so far
        self.state = "open"  # then "finished" (checked, durable), "committed" (renamed) or "discarded"

    @property
    def sha256(self) -> str:
        """The SHA-256 (hex) of the bytes written so far."""
        return self._hash.hexdigest()

    def write(self, chunk: bytes | memoryview) -> None:
        """Append ``chunk``; past ``size`` or ``limit`` the file is removed and the write refused."""
        if self._fh is None:
            raise ValueError(f"{self.what}: the staged file is {self.state}")
        self.size += len(chunk)
        if self._size is not None and self.size > self._size:
            self.discard()
            raise TamperedError(
                f"{self.what}: more than the {self._size} bytes {self._announced_by} announced", subject=self.what
            )
        if self._limit is not None and self.size > self._limit:
            self.discard()
            raise self._limit_error(f"{self.what} is larger than {self._limit} bytes", subject=self.what)
        self._hash.update(chunk)
        self._fh.write(chunk)

    def copy_from(self, src: IO[bytes]) -> None:
        """:meth:`write` everything ``src`` holds, in bounded chunks."""
        while chunk := src.read(COPY_CHUNK):
            self.write(chunk)

    def finish(self) -> Path:
        """Check the bytes against ``size`` and ``sha256`` and make them durable; the temporary path stays."""
        if self.state in ("finished", "committed"):
            return self.path
        if self._fh is None:
            raise ValueError(f"{self.what}: the staged file is {self.state}")
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            if self._size is not None and self.size != self._size:
                raise TamperedError(
                    f"{self.what}: {self.size} bytes, {self._announced_by} announced {self._size}", subject=self.what
                )
            if self._sha256 is not None and self.sha256 != self._sha256:
                raise TamperedError(
                    f"{self.what}: SHA-256 {self.sha256} differs from the {self._sha256} {self._announced_by} "
                    "announced",
                    subject=self.what,
                )
        except BaseException:
            self.discard()
            raise
        self.state = "finished"
        return self.path

    def commit(self, name: str | None = None) -> Path:
        """:meth:`finish`, then rename to ``directory/name`` (by default the SHA-256); returns the final path.

        An existing file of that name is replaced.
        """
        self.finish()
        if self.state == "committed":
            return self.path
        target = self.directory / (name if name is not None else self.sha256)
        try:
            os.replace(self.path, target)
        except BaseException:
            self.discard()
            raise
        self.path = target
        self.state = "committed"
        fsync_dir(self.directory)
        return target

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Discard on any exception; otherwise :meth:`finish` (the file stays at its temporary path uncommitted)."""
        if exc_type is not None:
            self.discard()
        elif self.state == "open":
            self.finish()

    def discard(self) -> None:
        """Remove the temporary file; nothing happens once committed."""
        if self.state in ("committed", "discarded"):
            return
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.state = "discarded"


staged_file = StagedFile
"""The spelling for ``with``: ``with staged_file(directory, sha256=..., size=...) as out:`` (see :class:`StagedFile`).

Example::

    with staged_file(dest, sha256=expected, size=n, what="demo@1.0.0", announced_by="the index") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
        out.commit("demo-1.0.0.zip")
"""


__all__ = [
    "COPY_CHUNK",
    "StagedFile",
    "atomic_write_bytes",
    "atomic_writer",
    "fsync_dir",
    "read_bounded",
    "staged_file",
]
