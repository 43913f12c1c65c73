"""Streaming digests: SHA-256, SHA-512 (OpenSSL through hashlib) and BLAKE3 (multi-threaded).

Files are hashed through a read-only memory map in large slices, so the bytes are never copied into Python
objects and never held whole in memory (the kernel pages them in and out). hashlib and blake3 release the GIL
while hashing, so when several algorithms are wanted at once they run in parallel threads over the same map:
each byte is read from disk once.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

from .errors import UsageError

DigestAlgorithm = Literal["sha256", "sha512", "blake3"]
DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("sha256", "sha512", "blake3")
DEFAULT_DIGEST: DigestAlgorithm = "sha256"
SLICE = 8 << 20  # 8 MiB slices: large enough that per-call overhead vanishes, small enough for smooth progress


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


def _slices(view: memoryview) -> Iterator[memoryview]:
    for start in range(0, len(view), SLICE):
        yield view[start : start + SLICE]


def hash_file(
    path: Path, algorithms: Iterable[str] = (DEFAULT_DIGEST,), *, progress: Callable[[int], None] | None = None
) -> dict[str, bytes]:
    """Digest a file with each algorithm, reading it once. ``progress`` is called with byte counts."""
    algs = tuple(dict.fromkeys(algorithms))
    for a in algs:
        check_algorithm(a)
    with Path(path).open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return {a: new_hasher(a).digest() for a in algs}
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            mm.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mm)
            try:
                return _hash_view(view, algs, progress)
            finally:
                view.release()


def _hash_view(view: memoryview, algs: tuple[str, ...], progress: Callable[[int], None] | None) -> dict[str, bytes]:
    if len(algs) == 1:
        h = new_hasher(algs[0])
        for part in _slices(view):
            h.update(part)
            if progress:
                progress(len(part))
        return {algs[0]: h.digest()}

    def run(alg: str, report: bool) -> bytes:
        h = new_hasher(alg)
        for part in _slices(view):
            h.update(part)
            if report and progress:
                progress(len(part))
        return h.digest()

    with ThreadPoolExecutor(max_workers=len(algs)) as pool:
        futures = {a: pool.submit(run, a, i == 0) for i, a in enumerate(algs)}
        return {a: f.result() for a, f in futures.items()}


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
