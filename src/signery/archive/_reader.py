"""The validated archive: :class:`ZipArchive` (open, read, hash), with the C accelerator for the common case."""


from __future__ import annotations

import contextlib
import mmap
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

from .._internal.closing import Closing
from ..digests import MultiHasher
from ..errors import MalformedError, TamperedError, UnsafeArchiveError
from ._model import (
    _CHUNK,
    _DROP_MIN,
    _DROP_STEP,
    _EOCD,
    _EOCD_FMT,
    _FAST_DIGESTS,
    _FAST_ENTRY_MAX,
    _FAST_RUN_BYTES,
    _LFH,
    _PARSE_CACHE,
    _PARSE_CACHE_SIZE,
    _PROGRESS_STEP,
    _THREADS,
    DEFAULT_LIMITS,
    STORED,
    ArchiveLimits,
    ZipEntry,
)
from ._parse import _parse

try:  # the optional C accelerator (setup.py); the pure-Python reader in _parse is the reference either way
    from .. import _fastzip as _fastzip
except ImportError:  # pragma: no cover - exercised where no compiler was available at install time
    _fastzip = None  # type: ignore[assignment,unused-ignore]


class ZipArchive(Closing):
    """A ZIP archive validated as a whole on open. Use as a context manager.

    ``entries`` are in central-directory order (the order Dify's signature covers; native subjects are sorted);
    ``files`` are the non-directory ones.
    """

    def __init__(
        self,
        path: Path,
        fh: IO[bytes],
        mm: mmap.mmap | None,
        entries: Sequence[ZipEntry],
        comment: bytes,
        cd_offset: int,
        limits: ArchiveLimits,
    ) -> None:
        self.path = path
        self._fh = fh
        self._mm = mm
        self.entries: tuple[ZipEntry, ...] = tuple(entries)
        self.comment = comment
        self.cd_offset = cd_offset
        self.limits = limits
        self._by_name: dict[str, ZipEntry] | None = None  # built on first use: most readers never look up by name

    # -- opening and validation -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, limits: ArchiveLimits = DEFAULT_LIMITS) -> ZipArchive:
        """Open and validate ``path``. Raises ``malformed`` (not a zip) or ``unsafe-archive``."""
        path = Path(path)
        fh = path.open("rb")
        try:
            size = os.fstat(fh.fileno()).st_size
            if size < _EOCD_FMT.size:
                raise MalformedError(f"{path} is not a ZIP archive (too short)", subject=str(path))
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                st = os.fstat(fh.fileno())
                # The parse depends only on the bytes; the identity below changes whenever they can have.
                identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, limits)
                cached = _PARSE_CACHE.get(identity)
                if cached is None:
                    cached = _scan(mm, limits) or _parse(mm, size, limits, str(path))
                    if len(_PARSE_CACHE) >= _PARSE_CACHE_SIZE:
                        _PARSE_CACHE.pop(next(iter(_PARSE_CACHE)))
                    _PARSE_CACHE[identity] = cached
                entries, comment, cd_offset = cached
            except BaseException:
                mm.close()
                raise
            return cls(path, fh, mm, entries, comment, cd_offset, limits)
        except BaseException:
            fh.close()
            raise

    def close(self) -> None:
        if self._mm is not None:
            with contextlib.suppress(BufferError):  # a chunk view outlives an error (held by its traceback)
                self._mm.close()  # then the map is freed with that view
            self._mm = None
        self._fh.close()

    @property
    def files(self) -> tuple[ZipEntry, ...]:
        return tuple(e for e in self.entries if not e.is_dir)

    def get(self, name: str) -> ZipEntry | None:
        if self._by_name is None:
            self._by_name = {e.name: e for e in self.entries}
        return self._by_name.get(name)

    @property
    def size(self) -> int:
        return len(self._map)

    @property
    def _map(self) -> mmap.mmap:
        if self._mm is None:
            raise ValueError("archive is closed")
        return self._mm

    # -- reading entries ---------------------------------------------------------------------------------------

    def iter_chunks(
        self, entry: ZipEntry, *, progress: Callable[[int], None] | None = None
    ) -> Iterator[bytes | memoryview]:
        """The entry's uncompressed bytes in bounded chunks; CRC-32 and size are checked at the end.

        ``progress`` is told the compressed bytes consumed as the chunks are taken (about every
        ``_PROGRESS_STEP``), adding up to the entry's ``compressed_size`` once it has all been read.
        Raises ``tampered`` when the data does not match its CRC or declared size (the entry is named).
        """
        mm = self._map
        raw = memoryview(mm)[entry.data_offset : entry.data_offset + entry.compressed_size]
        crc = 0
        produced = 0
        dropped = 0  # compressed bytes whose mapped pages were released
        reported = 0  # compressed bytes told to progress

        def consumed(pos: int) -> None:
            """The first ``pos`` compressed bytes are taken: tell ``progress``, release their mapped pages."""
            nonlocal reported, dropped
            if progress and pos - reported >= _PROGRESS_STEP:
                progress(pos - reported)
                reported = pos
            if pos - dropped >= _DROP_STEP:
                self._drop_pages(entry.data_offset + dropped, entry.data_offset + pos)
                dropped = pos

        try:
            if entry.method == STORED:
                for start in range(0, len(raw), _CHUNK):
                    part = raw[start : start + _CHUNK]
                    crc = zlib.crc32(part, crc)
                    produced += len(part)
                    yield part
                    consumed(start + len(part))
            else:
                d = zlib.decompressobj(-15)
                pos = 0
                while True:
                    if d.unconsumed_tail:
                        out = d.decompress(d.unconsumed_tail, _CHUNK)
                    elif pos < len(raw):
                        step = raw[pos : pos + _CHUNK]
                        pos += len(step)
                        out = d.decompress(step, _CHUNK)
                    else:
                        out = d.flush()
                        if out:
                            produced += len(out)
                            if produced > entry.size:
                                break
                            crc = zlib.crc32(out, crc)
                            yield out
                        break
                    if out:
                        produced += len(out)
                        if produced > entry.size:
                            break  # more data than declared: a bomb lying about its size
                        crc = zlib.crc32(out, crc)
                        yield out
                    consumed(pos - len(d.unconsumed_tail) - len(d.unused_data))
                    if d.eof:
                        break
                if not d.eof and produced <= entry.size:
                    raise TamperedError(f"entry {entry.name!r}: compressed data is truncated", subject=entry.name)
                if d.unused_data or (pos < len(raw) and produced <= entry.size):
                    raise UnsafeArchiveError(
                        f"entry {entry.name!r}: bytes after the end of its compressed stream", subject=entry.name
                    )
        except zlib.error as exc:
            raise TamperedError(f"entry {entry.name!r}: corrupt compressed data ({exc})", subject=entry.name) from None
        finally:
            raw.release()
            self._drop_pages(entry.data_offset + dropped, entry.data_offset + entry.compressed_size)
        if produced != entry.size:
            raise TamperedError(
                f"entry {entry.name!r}: {'more' if produced > entry.size else 'fewer'} bytes than its header declares",
                subject=entry.name,
            )
        if crc != entry.crc:
            raise TamperedError(f"entry {entry.name!r}: CRC-32 mismatch (contents changed)", subject=entry.name)
        if progress and entry.compressed_size > reported:  # all of it was read: the rest of the entry
            progress(entry.compressed_size - reported)

    def _drop_pages(self, start: int, end: int) -> None:
        """Let go of mapped pages already consumed, so resident memory stays flat on huge archives.

        The mapping is read-only and file-backed: the kernel keeps the data in its page cache and maps it again
        if it is touched later. Only large spans are worth the system call.
        """
        if end - start < _DROP_MIN:
            return
        aligned = start - start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, aligned, min(end, len(self._map)) - aligned)

    def read(self, entry: ZipEntry, *, max_size: int = 16 << 20) -> bytes:
        """The whole uncompressed content of a small entry (refused above ``max_size``)."""
        if entry.size > max_size:
            raise UnsafeArchiveError(
                f"entry {entry.name!r} is {entry.size} bytes; at most {max_size} expected", subject=entry.name
            )
        return b"".join(bytes(c) for c in self.iter_chunks(entry))

    def hash_entry(
        self, entry: ZipEntry, algorithms: Iterable[str], *, progress: Callable[[int], None] | None = None
    ) -> dict[str, bytes]:
        """The entry's digests; ``progress`` as for :meth:`iter_chunks` (compressed bytes, as it goes)."""
        h = MultiHasher(algorithms)
        for chunk in self.iter_chunks(entry, progress=progress):
            h.update(chunk)
        return h.digests()

    def hash_files(
        self,
        algorithms: Iterable[str],
        *,
        exclude: Iterable[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> list[tuple[ZipEntry, dict[str, bytes]]]:
        """Digest every file entry (in archive order) except ``exclude``, each byte decompressed once.

        Runs of small entries go to the accelerator when it is built and one SHA-2 digest is asked for: it inflates,
        checks and hashes them on every core. Should it fail to confirm any entry of a run, the run is read again
        here, entry by entry, so that the error raised is the reference's, with its reason.
        """
        algs = tuple(algorithms)
        skip = set(exclude)
        todo = [e for e in self.files if e.name not in skip]
        if len(algs) == 1:
            digests = self._digests(todo, algs[0], progress, as_hex=False)
            return [(e, {algs[0]: d}) for e, d in zip(todo, digests, strict=True)]
        return [(e, self.hash_entry(e, algs, progress=progress)) for e in todo]

    def hex_digests(
        self, algorithm: str, *, exclude: Iterable[str] = (), progress: Callable[[int], None] | None = None
    ) -> list[tuple[str, str]]:
        """``(name, hex digest)`` of every file entry in archive order except ``exclude``."""
        skip = set(exclude)
        todo = [e for e in self.files if e.name not in skip]
        return list(zip([e.name for e in todo], self._digests(todo, algorithm, progress, as_hex=True), strict=True))

    @overload
    def _digests(
        self, todo: list[ZipEntry], alg: str, progress: Callable[[int], None] | None, *, as_hex: Literal[True]
    ) -> list[str]: ...
    @overload
    def _digests(
        self, todo: list[ZipEntry], alg: str, progress: Callable[[int], None] | None, *, as_hex: Literal[False]
    ) -> list[bytes]: ...
    def _digests(
        self, todo: list[ZipEntry], alg: str, progress: Callable[[int], None] | None, *, as_hex: bool
    ) -> list[str] | list[bytes]:
        """One digest per entry, in order. Runs of entries go to the accelerator when it is built and can compute
        ``alg``: it inflates, checks and hashes them on every core. Should it fail to confirm any entry of a run,
        the run is read again here, entry by entry, so that the error raised is the reference's.

        ``progress`` is told compressed bytes, each entry's exactly once whatever the path, and steadily within
        large entries: the accelerator hashes those one by one after the rest of their run, calling back every
        ``_PROGRESS_STEP`` bytes; the streaming reader here reports as it goes too.
        """
        meter = None if progress is None else _Meter(progress)

        def slow(e: ZipEntry) -> Any:
            d = self.hash_entry(e, (alg,), progress=meter)[alg]
            return d.hex() if as_hex else d

        if _fastzip is None or alg not in _FAST_DIGESTS:
            return [slow(e) for e in todo]
        out: list[Any] = []
        # One call for the whole archive, every entry on the threads; or, when a bar is shown, calls of about
        # _FAST_RUN_BYTES, so that it moves between them too.
        whole = meter is None or self.size < 2 * _FAST_RUN_BYTES
        runs = [todo] if whole else _runs(todo, _FAST_RUN_BYTES)
        for run in runs:
            if meter is None:
                digests: Any = _fastzip.digest(self._map, run, alg, _THREADS, as_hex)
            else:
                before = meter.shown
                digests = _fastzip.digest(self._map, run, alg, _THREADS, as_hex, _FAST_ENTRY_MAX, meter, _PROGRESS_STEP)
            if isinstance(digests, int):  # the reference decides, and names the entry and the reason
                if meter is not None:
                    meter.credit = meter.shown - before  # what the bar was already told of this run
                out.extend(slow(e) for e in run)
                continue
            out.extend(digests)
        return out

    def raw_bytes(self, start: int, end: int) -> memoryview:
        return memoryview(self._map)[start:end]


class _Meter:
    """Passes progress on, counting it. After the accelerator gave up on a run, the streaming reader reads it
    again from the start: ``credit`` is what the bar was already told of it, which is not told twice."""

    def __init__(self, progress: Callable[[int], None]) -> None:
        self.progress = progress
        self.shown = 0
        self.credit = 0

    def __call__(self, n: int) -> None:
        if self.credit:
            taken = min(n, self.credit)
            self.credit -= taken
            n -= taken
        if n > 0:
            self.shown += n
            self.progress(n)


def _runs(entries: list[ZipEntry], size: int) -> list[list[ZipEntry]]:
    """Consecutive runs of about ``size`` compressed bytes."""
    runs: list[list[ZipEntry]] = [[]]
    weight = 0
    for e in entries:
        runs[-1].append(e)
        weight += e.compressed_size
        if weight >= size:
            runs.append([])
            weight = 0
    return [r for r in runs if r]


def _scan(mm: mmap.mmap, limits: ArchiveLimits) -> tuple[list[ZipEntry], bytes, int] | None:
    """The accelerator's parse of a plain archive, or ``None`` when :func:`_parse` must judge it.

    The accelerator accepts only archives that :func:`_parse` accepts too, with the same result (tested
    differentially); it never refuses anything itself, so every refusal comes from the reference with its reason.
    """
    if _fastzip is None:
        return None
    # Clamped to 64-bit C integers: no archive the accelerator accepts (at most 65,535 entries of < 4 GiB) comes
    # anywhere near such bounds, so the clamp changes no verdict.
    cap = (1 << 63) - 1
    bounds = (
        min(limits.max_entries, cap),
        min(limits.max_total_size, cap),
        min(limits.max_entry_size, cap),
        min(limits.max_ratio, cap),
        min(limits.ratio_floor, cap),
    )
    return _fastzip.scan(mm, bounds, ZipEntry)



def is_zip(path: Path) -> bool:
    """Whether ``path`` starts like a ZIP archive (cheap sniff; :meth:`ZipArchive.open` decides)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in (_LFH, _EOCD)


