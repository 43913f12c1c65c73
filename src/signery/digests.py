"""Streaming digests: SHA-256, SHA-512 (OpenSSL through hashlib) and BLAKE3 (multi-threaded).

Files are never read whole: large ones are hashed window by window straight from the page cache (see
:func:`hash_file`), and when several algorithms are wanted they hash each window in parallel threads, so each
byte is read from disk once.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

from .errors import UsageError

DigestAlgorithm = Literal["sha256", "sha512", "blake3"]
DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("sha256", "sha512", "blake3")
DEFAULT_DIGEST: DigestAlgorithm = "sha256"
MAP_MIN = 1 << 20  # smaller files are read in one call; larger ones hashed through a mapping
WINDOW = 32 << 20  # mapped bytes hashed (and then released) at a time: resident memory stays under 100 MB


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> Any: ...

    def digest(self) -> bytes: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hash object for one of :data:`DIGEST_ALGORITHMS`."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "sha512":
        return hashlib.sha512()
    if algorithm == "blake3":
        import blake3

        h: Hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        return h
    raise UsageError(f"unknown digest algorithm {algorithm!r}; choose one of {', '.join(DIGEST_ALGORITHMS)}")


def check_algorithm(algorithm: str) -> DigestAlgorithm:
    if algorithm not in DIGEST_ALGORITHMS:
        raise UsageError(f"unknown digest algorithm {algorithm!r}; choose one of {', '.join(DIGEST_ALGORITHMS)}")
    return algorithm  # type: ignore[return-value]


class MultiHasher:
    """Feeds the same bytes to several hash objects; one algorithm is the common case and costs nothing extra."""

    def __init__(self, algorithms: Iterable[str]) -> None:
        algs = tuple(dict.fromkeys(algorithms))
        if not algs:
            raise UsageError("at least one digest algorithm is needed")
        self._hashers = {a: new_hasher(a) for a in algs}

    def update(self, data: bytes | memoryview) -> None:
        for h in self._hashers.values():
            h.update(data)

    def digests(self) -> dict[str, bytes]:
        return {a: h.digest() for a, h in self._hashers.items()}


def hash_file(
    path: Path, algorithms: Iterable[str] = (DEFAULT_DIGEST,), *, progress: Callable[[int], None] | None = None
) -> dict[str, bytes]:
    """Digest a file with each algorithm, reading it once. ``progress`` is called with byte counts.

    Large files are hashed straight from the page cache through a read-only mapping, one window at a time: no
    copy into user buffers, the kernel reads ahead of the hasher, and each window is released once hashed, so
    resident memory stays at one window whatever the file size. With several algorithms each window is hashed by
    all of them in parallel (hashlib and blake3 release the GIL). Small files are simply read.
    """
    algs = tuple(dict.fromkeys(algorithms))
    for a in algs:
        check_algorithm(a)
    hashers = [new_hasher(a) for a in algs]
    with Path(path).open("rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < MAP_MIN or not hasattr(mmap.mmap, "madvise"):
            data = fh.read()
            for h in hashers:
                h.update(data)
            if progress and data:
                progress(len(data))
        else:
            _hash_mapped(fh.fileno(), size, hashers, progress)
    return {a: h.digest() for a, h in zip(algs, hashers, strict=True)}


def _hash_mapped(fd: int, size: int, hashers: list[Hasher], progress: Callable[[int], None] | None) -> None:
    pool = None
    if len(hashers) > 1:
        from concurrent.futures import ThreadPoolExecutor  # ~10 ms to import: only when it pays

        pool = ThreadPoolExecutor(max_workers=len(hashers))
    mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    try:
        mm.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(mm)
        try:
            for start in range(0, size, WINDOW):
                end = min(size, start + WINDOW)
                if end < size:  # let the kernel read the next window while this one is hashed
                    mm.madvise(mmap.MADV_WILLNEED, end, min(WINDOW, size - end))
                window = view[start:end]
                if pool is None:
                    hashers[0].update(window)
                else:
                    for f in [pool.submit(h.update, window) for h in hashers]:
                        f.result()
                window.release()
                mm.madvise(mmap.MADV_DONTNEED, start, end - start)  # the page cache keeps it; our RSS does not
                if progress:
                    progress(end - start)
        finally:
            view.release()
    finally:
        mm.close()
        if pool is not None:
            pool.shutdown()


def hash_bytes(data: bytes, algorithm: str = DEFAULT_DIGEST) -> bytes:
    h = new_hasher(check_algorithm(algorithm))
    h.update(data)
    return h.digest()


__all__ = [
    "DEFAULT_DIGEST",
    "DIGEST_ALGORITHMS",
    "MultiHasher",
    "check_algorithm",
    "hash_bytes",
    "hash_file",
    "new_hasher",
]
