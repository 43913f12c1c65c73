"""Streaming digests: SHA-256, SHA-512 (OpenSSL through hashlib) and BLAKE3 (multi-threaded).

Files are read in fixed-size buffers, never whole. hashlib and blake3 release the GIL while hashing, so reading
the next buffer overlaps hashing the last one, and when several algorithms are wanted they hash each buffer in
parallel threads: each byte is read from disk once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import UsageError

if TYPE_CHECKING:
    from concurrent.futures import Future

DigestAlgorithm = Literal["sha256", "sha512", "blake3"]
DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("sha256", "sha512", "blake3")
DEFAULT_DIGEST: DigestAlgorithm = "sha256"
BUFFER = 4 << 20  # 4 MiB reads: per-call overhead vanishes, and two buffers keep memory flat


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

    Two fixed buffers alternate: while the hashers (which release the GIL) digest one, the next is read into the
    other, so reading overlaps hashing and memory stays at two buffers whatever the file size.
    """
    from concurrent.futures import ThreadPoolExecutor  # ~10 ms to import; `verify` of a small ZIP never needs it

    algs = tuple(dict.fromkeys(algorithms))
    for a in algs:
        check_algorithm(a)
    hashers = [new_hasher(a) for a in algs]
    buffers = (bytearray(BUFFER), bytearray(BUFFER))
    with Path(path).open("rb", buffering=0) as fh, ThreadPoolExecutor(max_workers=len(algs)) as pool:
        pending: list[Future[Any]] = []
        turn = 0
        while True:
            buf = buffers[turn]
            n = fh.readinto(buf)  # type: ignore[attr-defined]
            for f in pending:  # the other buffer's hashing must finish before that buffer is refilled
                f.result()
            if not n:
                break
            view = memoryview(buf)[:n]
            pending = [pool.submit(h.update, view) for h in hashers]
            if progress:
                progress(n)
            turn ^= 1
    return {a: h.digest() for a, h in zip(algs, hashers, strict=True)}


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
