"""Atomic file writes: an interrupted write leaves the old file (or no file) in place, never half of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import UsageError


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse to open directories; the rename still happened
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
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``."""
    with atomic_writer(path, mode=mode, overwrite=overwrite) as fh:
        fh.write(data)
