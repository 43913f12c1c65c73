"""The one strict reader of package archives (ZIP): what it lists is exactly what any installer extracts.

Verification and installation both read archives through :class:`ZipArchive`, so there is no second parser that
could see different contents. Anything ambiguous or dangerous is refused with ``unsafe-archive`` and the entry
named: duplicate names (also after case folding and Unicode normalisation), absolute paths, ``..``, backslashes,
control characters, links and special files, encrypted entries, local headers that disagree with the central
directory, overlapping or unaccounted bytes, trailing data, multi-disk archives, unknown compression, and archives
beyond the limits in :class:`ArchiveLimits` (entries, sizes, compression ratio). Entry data is decompressed in
bounded chunks and checked against its CRC-32 and declared size.

The format is parsed here by hand (PKWARE APPNOTE 6.3) because :mod:`zipfile` is deliberately lenient: it accepts
duplicate names, overlapping entries and prefixed data, which are exactly the ambiguities attackers use.

Example::

    with ZipArchive.open(Path("plugin.zip")) as archive:
        for entry in archive.files:
            digest = archive.hash_entry(entry, ["sha256"])["sha256"]
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple, overload

from .digests import MultiHasher
from .errors import MalformedError, TamperedError, UnsafeArchiveError

try:  # the optional C accelerator (setup.py); the pure-Python reader below is the reference either way
    from . import _fastzip as _fastzip  # (as: formats.native uses it too)
except ImportError:  # pragma: no cover - exercised where no compiler was available at install time
    _fastzip = None  # type: ignore[assignment,unused-ignore]

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOC = b"PK\x06\x07"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"
_DD = b"PK\x07\x08"
_EOCD_FMT = struct.Struct("<4sHHHHIIH")  # 22 bytes
_EOCD64_LOC_FMT = struct.Struct("<4sIQI")  # 20 bytes
_EOCD64_FMT = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CDH_FMT = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_LFH_FMT = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_MAX_COMMENT = 0xFFFF
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF

STORED, DEFLATED = 0, 8
_FLAG_ENCRYPTED = 0x1
_FLAG_DATA_DESCRIPTOR = 0x8
_FLAG_STRONG_ENCRYPTION = 0x40
_FLAG_UTF8 = 0x800
_FLAG_MASKED_HEADERS = 0x2000
_UNIX = 3
_CHUNK = 1 << 20  # decompress in 1 MiB steps so a bomb never inflates beyond one step before it is caught
_MAX_EMPTY_DEFLATE = 16  # a directory entry's "compressed" empty body (deflate of b"" is 2 bytes)
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: terminal escapes and truncation tricks
_PARSE_CACHE_SIZE = 4  # detection and verification of one package share one parse
_DROP_MIN = 4 << 20  # below this, releasing mapped pages costs more than it saves
_FAST_DIGESTS = frozenset({"sha256", "sha512"})  # what the accelerator hashes (through OpenSSL, like hashlib)
_FAST_ENTRY_MAX = 16 << 20  # larger entries stream through iter_chunks, with progress within the entry
_FAST_RUN_BYTES = 32 << 20  # compressed bytes per accelerator call when a progress bar is shown
_THREADS = min(8, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_MAX_NAME_BYTES = 1024  # longer than any real path; PATH_MAX-class names are an attack on extractors


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may contain. Defaults fit real plugins with ample room.

    Attributes:
        max_entries: entry count (zip bombs with millions of empty entries exhaust inodes and memory).
        max_total_size: total uncompressed bytes (a bomb's declared total).
        max_entry_size: uncompressed bytes of one entry.
        max_ratio: uncompressed/compressed ratio for entries over ``ratio_floor`` bytes (classic deflate bombs
            reach ~1000:1; real code and assets stay far below 100:1).
        ratio_floor: entries smaller than this are not ratio-checked (tiny files compress oddly and harmlessly).
    """

    max_entries: int = 100_000
    max_total_size: int = 8 << 30
    max_entry_size: int = 4 << 30
    max_ratio: int = 200
    ratio_floor: int = 1 << 20

    def __post_init__(self) -> None:
        if min(self.max_entries, self.max_total_size, self.max_entry_size, self.max_ratio) < 1:
            raise ValueError("archive limits must be positive")


DEFAULT_LIMITS = ArchiveLimits()
_PARSE_CACHE: dict[tuple[object, ...], tuple[list[ZipEntry], bytes, int]] = {}


class ZipEntry(NamedTuple):
    """One entry as the central directory and its local header agree it is.

    A named tuple rather than a dataclass: archives with 100,000 entries create that many, and the accelerator
    builds them directly.
    """

    name: str
    position: int  # in the central directory
    is_dir: bool
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int
    end_offset: int  # end of data and of any data descriptor: where the next entry must begin
    mode: int
    cd_record: bytes  # the raw central-directory record, reused verbatim when the archive is rewritten


# Windows device names: opening "CON" or "a/NUL.txt" opens the device, not a file, whatever the extension.
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{d}{n}" for d in ("COM", "LPT") for n in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³"]]
)
_WINDOWS_RESERVED = frozenset('<>:"|?*')  # ':' opens an NTFS alternate data stream; the rest are invalid there
# Unicode categories a name may not use: controls, format characters (bidi overrides U+202E, zero-width U+200B,
# BOM U+FEFF), surrogates, private use, unassigned (readers on other Unicode versions see them differently),
# line and paragraph separators, and spaces other than U+0020.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def check_entry_name(name: str, *, raw: bytes | None = None) -> None:
    """Refuse names that could escape or confuse an extraction directory (raises ``unsafe-archive``).

    The rules are those of ``docs/formats/archives.md``: no empty, absolute, ``.`` or ``..`` paths, no backslash,
    no control, format (bidi, zero-width), private-use, unassigned or non-ASCII space characters, no component
    that Windows would read differently (a device name such as ``CON`` or ``nul.txt``, a trailing dot or space,
    any of ``<>:"|?*``), and at most 1,024 bytes.
    """
    subject = name
    if not name:
        raise UnsafeArchiveError("archive entry with an empty name", subject="<empty>")
    if raw is not None and len(raw) > _MAX_NAME_BYTES:
        raise UnsafeArchiveError(f"entry name is {len(raw)} bytes long", subject=subject[:80])
    if _CONTROL_CHARS.search(name):
        raise UnsafeArchiveError(f"entry name {name!r} contains a control character", subject=repr(name))
    if "\\" in name:
        raise UnsafeArchiveError(f"entry name {name!r} contains a backslash", subject=name)
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        raise UnsafeArchiveError(f"entry name {name!r} is an absolute path", subject=name)
    if not name.isascii():
        for ch in name:
            if ch != " " and unicodedata.category(ch) in _BAD_CATEGORIES:
                raise UnsafeArchiveError(
                    f"entry name {name!r} contains U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}), which "
                    "displays or lands differently from what it seems",
                    subject=repr(name),
                )
    if any(c in _WINDOWS_RESERVED for c in name):
        raise UnsafeArchiveError(
            f"entry name {name!r} contains one of <>:\"|?* (an NTFS stream or an invalid name on Windows)",
            subject=name,
        )
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeArchiveError(f"entry name {name!r} has an empty, '.' or '..' component", subject=name)
        if part[-1] in ". ":
            raise UnsafeArchiveError(
                f"entry name {name!r}: component {part!r} ends in a dot or space (Windows drops it)", subject=name
            )
        if part.split(".", 1)[0].rstrip(" ").upper() in _DEVICE_NAMES:
            raise UnsafeArchiveError(f"entry name {name!r}: {part!r} is a Windows device name", subject=name)


def fold_name(name: str) -> str:
    """The key under which two names would land on the same file somewhere: NTFS and APFS fold case (NTFS with
    its own upcase table, so ``maın.py`` meets ``MAIN.PY``), macOS normalises Unicode. Folding more than any one
    filesystem does only refuses more, never less."""
    return unicodedata.normalize("NFKC", name.rstrip("/")).upper().casefold()


_fold = fold_name


class ZipArchive:
    """A ZIP archive validated as a whole on open. Use as a context manager.

    ``entries`` are in central-directory order (the order signatures cover); ``files`` are the non-directory ones.
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

    def __enter__(self) -> ZipArchive:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

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

    def iter_chunks(self, entry: ZipEntry) -> Iterator[bytes | memoryview]:
        """The entry's uncompressed bytes in bounded chunks; CRC-32 and size are checked at the end.

        Raises ``tampered`` when the data does not match its CRC or declared size (the entry is named).
        """
        mm = self._map
        raw = memoryview(mm)[entry.data_offset : entry.data_offset + entry.compressed_size]
        crc = 0
        produced = 0
        try:
            if entry.method == STORED:
                for start in range(0, len(raw), 8 * _CHUNK):
                    part = raw[start : start + 8 * _CHUNK]
                    crc = zlib.crc32(part, crc)
                    produced += len(part)
                    yield part
                    self._drop_pages(entry.data_offset + start, entry.data_offset + start + len(part))
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
            self._drop_pages(entry.data_offset, entry.data_offset + entry.compressed_size)
        if produced != entry.size:
            raise TamperedError(
                f"entry {entry.name!r}: {'more' if produced > entry.size else 'fewer'} bytes than its header declares",
                subject=entry.name,
            )
        if crc != entry.crc:
            raise TamperedError(f"entry {entry.name!r}: CRC-32 mismatch (contents changed)", subject=entry.name)

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

    def hash_entry(self, entry: ZipEntry, algorithms: Iterable[str]) -> dict[str, bytes]:
        h = MultiHasher(algorithms)
        for chunk in self.iter_chunks(entry):
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
        out: list[tuple[ZipEntry, dict[str, bytes]]] = []
        for e in todo:
            out.append((e, self.hash_entry(e, algs)))
            if progress:
                progress(e.compressed_size)
        return out

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
        """One digest per entry, in order. Runs of small entries go to the accelerator when it is built and can
        compute ``alg``: it inflates, checks and hashes them on every core. Should it fail to confirm any entry of
        a run, the run is read again here, entry by entry, so that the error raised is the reference's.
        """

        def slow(e: ZipEntry) -> Any:
            d = self.hash_entry(e, (alg,))[alg]
            if progress:
                progress(e.compressed_size)
            return d.hex() if as_hex else d

        if _fastzip is None or alg not in _FAST_DIGESTS:
            return [slow(e) for e in todo]
        out: list[Any] = []
        # One call for the whole archive, or calls of about _FAST_RUN_BYTES when a progress bar wants to move.
        runs = [todo] if progress is None or self.size < 2 * _FAST_RUN_BYTES else _runs(todo, _FAST_RUN_BYTES)
        for run in runs:
            digests: Any = _fastzip.digest(self._map, run, alg, _THREADS, as_hex, _FAST_ENTRY_MAX)
            if isinstance(digests, int):  # the reference decides, and names the entry and the reason
                out.extend(slow(e) for e in run)
                continue
            done = 0
            for i, d in enumerate(digests):
                if d is None:  # a large entry: streamed here, with progress inside it
                    digests[i] = slow(run[i])
                else:
                    done += run[i].compressed_size if progress else 0
            out.extend(digests)
            if progress:
                progress(done)
        return out

    def raw_bytes(self, start: int, end: int) -> memoryview:
        return memoryview(self._map)[start:end]


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


# Record signatures a reader may look for anywhere near the end of an archive (APPNOTE 4.3): none may appear
# inside the archive comment or an entry comment, where a lenient reader could take them for structure.
_RECORD_SIGNATURE = re.compile(rb"PK(?:\x01\x02|\x03\x04|\x05\x05|\x05\x06|\x06\x06|\x06\x07|\x06\x08|\x07\x08)")
# Extra fields that carry no type, mode, name or link for any mainstream reader (anything else is refused; see
# docs/formats/archives.md): ZIP64 sizes, NTFS and Unix timestamps, Info-ZIP owner ids, the Unicode Path (checked
# to name the same file), and the JAR marker.
# The Info-ZIP Unicode Path field (0x7075) is not among them: it renames the entry for unzip alone, and even naming
# the same file it makes unzip refuse archives with data descriptors ("overlapped components"). UTF-8 names carry
# the UTF-8 flag instead.
_ZIP64_EXTRA = 0x0001
_ALLOWED_EXTRA = {
    0x0001: "ZIP64",
    0x000A: "NTFS timestamps",
    0x5455: "extended timestamp",
    0x5855: "Info-ZIP Unix (old)",
    0x7855: "Info-ZIP Unix owner",
    0x7875: "Info-ZIP Unix owner ids",
    0xCAFE: "JAR marker",
}
_UNIX_HOST = 3  # "made by" Unix: the high 16 bits of the external attributes are a Unix mode every reader applies
_DOS_DIRECTORY = 0x10
_MAX_VERSION_NEEDED = 45  # 4.5, ZIP64: unzip skips entries needing more than 4.6, zipfile fails above 6.3
_TEXT_ATTRIBUTE = 0x1  # the only internal attribute allowed: unzip drops execute bits for others (0x4)


def _unsafe_comment(data: bytes, what: str, subject: str) -> None:
    found = _RECORD_SIGNATURE.search(data)
    if found:
        raise UnsafeArchiveError(
            f"{what} holds a ZIP record signature {found.group()!r}: another reader could take it for the "
            "archive's structure",
            subject=subject,
        )


def _parse(mm: mmap.mmap, size: int, limits: ArchiveLimits, where: str) -> tuple[list[ZipEntry], bytes, int]:
    # End of central directory: the last signature in the tail, whose comment must run exactly to the end. Lenient
    # readers take the last one they find (or the first that parses), so an earlier record is never chosen.
    tail_start = max(0, size - _EOCD_FMT.size - _MAX_COMMENT)
    pos = mm.rfind(_EOCD, tail_start)
    if pos < 0:
        raise MalformedError(f"{where} is not a ZIP archive (no end-of-central-directory record)", subject=where)
    if pos + _EOCD_FMT.size > size:
        raise UnsafeArchiveError(f"{where}: data after the end-of-central-directory record", subject=where)
    _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = _EOCD_FMT.unpack_from(mm, pos)
    if pos + _EOCD_FMT.size + comment_len != size:
        raise UnsafeArchiveError(
            f"{where}: the end-of-central-directory record's comment does not run to the end of the file "
            "(data after it, or a second end record)",
            subject=where,
        )
    comment = bytes(mm[pos + _EOCD_FMT.size : size])
    _unsafe_comment(comment, "the archive comment", where)
    cd_end = pos
    if disk != 0 or cd_disk != 0 or n_disk != n_total:
        raise UnsafeArchiveError("multi-disk ZIP archives are not supported", subject=where)
    loc = pos - _EOCD64_LOC_FMT.size
    has_locator = loc >= 0 and mm[loc : loc + 4] == _EOCD64_LOC
    saturated = _U32 in (cd_size, cd_offset) or n_total == _U16
    if has_locator and not saturated:
        raise UnsafeArchiveError(
            f"{where}: a ZIP64 locator precedes the end record although no field needs ZIP64 (readers that honour "
            "it would read another central directory)",
            subject=where,
        )
    if saturated:
        if not has_locator:
            raise MalformedError(f"{where}: ZIP64 locator missing", subject=where)
        _, loc_disk, eocd64_off, disks = _EOCD64_LOC_FMT.unpack_from(mm, loc)
        if loc_disk != 0 or disks != 1 or eocd64_off + _EOCD64_FMT.size != loc:
            raise MalformedError(f"{where}: bad ZIP64 locator", subject=where)
        sig, rec_size, _, _, d64, cdd64, nd64, nt64, cd64_size, cd64_offset = _EOCD64_FMT.unpack_from(mm, eocd64_off)
        if sig != _EOCD64 or d64 != 0 or cdd64 != 0 or nd64 != nt64 or rec_size != _EOCD64_FMT.size - 12:
            raise MalformedError(f"{where}: bad ZIP64 end-of-central-directory record", subject=where)
        for field, value, wide, sentinel in (
            ("entry count", n_total, nt64, _U16),
            ("central directory size", cd_size, cd64_size, _U32),
            ("central directory offset", cd_offset, cd64_offset, _U32),
        ):
            if value not in (sentinel, wide):
                raise UnsafeArchiveError(
                    f"{where}: the end record's {field} ({value}) disagrees with the ZIP64 record's ({wide})",
                    subject=where,
                )
        n_total, cd_size, cd_offset = nt64, cd64_size, cd64_offset
        cd_end = eocd64_off
    if n_total > limits.max_entries:
        raise UnsafeArchiveError(f"archive has {n_total} entries; the limit is {limits.max_entries}", subject=where)
    if cd_offset + cd_size != cd_end:
        raise UnsafeArchiveError(
            "central directory does not end where the end record begins (prepended, appended or hidden data)",
            subject=where,
        )
    entries: list[ZipEntry] = []
    p = cd_offset
    seen: dict[str, str] = {}
    total = 0
    for index in range(n_total):
        if p + _CDH_FMT.size > cd_end or mm[p : p + 4] != _CDH:
            raise MalformedError(f"{where}: central directory record {index} is damaged", subject=where)
        (
            _,
            made_by,
            need,
            flags,
            method,
            mtime,
            mdate,
            crc,
            csize,
            usize,
            nlen,
            xlen,
            clen,
            disk_start,
            int_attr,
            ext_attr,
            hoff,
        ) = _CDH_FMT.unpack_from(mm, p)
        rec_end = p + _CDH_FMT.size + nlen + xlen + clen
        if rec_end > cd_end:
            raise MalformedError(f"{where}: central directory record {index} overruns", subject=where)
        raw_name = bytes(mm[p + _CDH_FMT.size : p + _CDH_FMT.size + nlen])
        extra = bytes(mm[p + _CDH_FMT.size + nlen : p + _CDH_FMT.size + nlen + xlen])
        entry_comment = bytes(mm[p + _CDH_FMT.size + nlen + xlen : rec_end])
        record = bytes(mm[p:rec_end])
        p = rec_end
        name = _decode_name(raw_name, flags, where)
        check_entry_name(name, raw=raw_name)
        _unsafe_comment(entry_comment, f"entry {name!r}'s comment", name)
        if disk_start != 0:
            raise UnsafeArchiveError(f"entry {name!r} starts on another disk", subject=name)
        _check_header_fields(need, mtime, mdate, name, "central directory")
        if int_attr & ~_TEXT_ATTRIBUTE:
            raise UnsafeArchiveError(
                f"entry {name!r} has internal attributes {int_attr:#06x} (unzip drops execute bits for some)",
                subject=name,
            )
        fields = _parse_extra(extra, name, "central directory")
        usize, csize, hoff = _zip64_sizes(fields.get(_ZIP64_EXTRA), usize, csize, hoff, name)
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION | _FLAG_MASKED_HEADERS):
            raise UnsafeArchiveError(f"entry {name!r} is encrypted", subject=name)
        if method not in (STORED, DEFLATED):
            raise UnsafeArchiveError(f"entry {name!r} uses unsupported compression method {method}", subject=name)
        if method == STORED and flags & _FLAG_DATA_DESCRIPTOR:
            # A streaming reader cannot know where stored data ends; libarchive searches for the descriptor's
            # signature, which the data itself may contain.
            raise UnsafeArchiveError(f"stored entry {name!r} has a data descriptor", subject=name)
        is_dir = name.endswith("/")
        mode = _entry_mode(made_by, ext_attr, is_dir, name)
        if is_dir and (usize or csize > _MAX_EMPTY_DEFLATE):
            raise UnsafeArchiveError(f"directory entry {name!r} has content", subject=name)
        folded = _fold(name)
        if folded in seen:
            raise UnsafeArchiveError(f"duplicate entry name {name!r} (clashes with {seen[folded]!r})", subject=name)
        seen[folded] = name
        if usize > limits.max_entry_size:
            raise UnsafeArchiveError(f"entry {name!r} would expand to {usize} bytes", subject=name)
        total += usize
        if total > limits.max_total_size:
            raise UnsafeArchiveError(f"archive would expand to more than {limits.max_total_size} bytes", subject=name)
        if usize > limits.ratio_floor and usize > limits.max_ratio * max(csize, 1):
            raise UnsafeArchiveError(
                f"entry {name!r} has a compression ratio of {usize // max(csize, 1)}:1 (limit {limits.max_ratio}:1)",
                subject=name,
            )
        if method == STORED and csize != usize:
            raise UnsafeArchiveError(f"stored entry {name!r} has different sizes", subject=name)
        data_offset, end_offset = _check_local_header(
            mm, hoff, raw_name, flags, method, crc, csize, usize, name, cd_offset
        )
        entries.append(
            ZipEntry(name, index, is_dir, method, flags, crc, csize, usize, hoff, data_offset, end_offset, mode, record)
        )
    if p != cd_end:
        raise UnsafeArchiveError("central directory holds more records than it declares", subject=where)
    _check_files_vs_dirs(seen)
    _check_layout(entries, cd_offset, where)
    return entries, comment, cd_offset


def _entry_mode(made_by: int, ext_attr: int, is_dir: bool, name: str) -> int:
    """The entry's Unix mode (0 when it has none), refusing any that readers would apply differently or unsafely."""
    if ext_attr & _DOS_DIRECTORY and not is_dir:
        raise UnsafeArchiveError(
            f"file entry {name!r} has the DOS directory attribute (bsdtar and 7-Zip create a directory)", subject=name
        )
    mode = (ext_attr >> 16) & 0xFFFF
    if not mode:
        return 0
    if made_by >> 8 != _UNIX_HOST:
        raise UnsafeArchiveError(
            f"entry {name!r} has a Unix mode ({oct(mode)}) but was made by host {made_by >> 8}: some readers apply "
            "it, others do not",
            subject=name,
        )
    ftype = stat.S_IFMT(mode)
    if ftype == stat.S_IFLNK:
        raise UnsafeArchiveError(f"entry {name!r} is a symbolic link", subject=name)
    if ftype == 0 and mode & 0o111:  # Python's zipfile writes 0o600 without a type; that much every reader agrees on
        raise UnsafeArchiveError(
            f"entry {name!r} has execute bits without a file type ({oct(mode)}): 7-Zip ignores them", subject=name
        )
    if ftype not in (0, stat.S_IFREG, stat.S_IFDIR) or (ftype != 0 and (ftype == stat.S_IFDIR) != is_dir):
        raise UnsafeArchiveError(f"entry {name!r} is a special file (mode {oct(mode)})", subject=name)
    check_mode(mode, is_dir, name)
    return mode


def check_mode(mode: int, is_dir: bool, name: str) -> None:
    """Refuse permission bits an extractor running as root would apply unsafely (shared by the tar reader):
    setuid, setgid, sticky, world-writable, and files their owner cannot read."""
    if mode & 0o7000:
        raise UnsafeArchiveError(f"entry {name!r} has setuid, setgid or sticky bits ({oct(mode)})", subject=name)
    if mode & 0o002:
        raise UnsafeArchiveError(f"entry {name!r} is world-writable ({oct(mode)})", subject=name)
    if not is_dir and not mode & 0o400:  # extractors defer directory modes to the end; a file's they apply at once
        raise UnsafeArchiveError(
            f"entry {name!r} has mode {oct(mode & 0o7777)}: its owner cannot read it", subject=name
        )


def _decode_name(raw: bytes, flags: int, where: str) -> str:
    # UTF-8 when the archive says so. Without the flag, readers differ (CP437, the locale, raw bytes), so only
    # ASCII names are accepted: they read the same everywhere.
    if flags & _FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchiveError(f"{where}: entry name is not valid UTF-8", subject=repr(raw)) from None
    if not raw.isascii():
        raise UnsafeArchiveError(
            f"{where}: entry name {raw.decode('cp437')!r} is not ASCII and lacks the UTF-8 flag (readers decode it "
            "as CP437, the locale or raw bytes)",
            subject=raw.decode("cp437"),
        )
    return raw.decode("ascii")


def _check_header_fields(need: int, mtime: int, mdate: int, name: str, where: str) -> None:
    """The version needed to extract is one every reader supports, and the DOS date and time are zero (unset, as
    Go writes them) or valid: 7-Zip reports a header error for an impossible date."""
    if need & 0xFF > _MAX_VERSION_NEEDED:
        raise UnsafeArchiveError(
            f"entry {name!r}: {where} needs version {need & 0xFF}/10 to extract (unzip and zipfile stop above 4.5)",
            subject=name,
        )
    if (mtime, mdate) == (0, 0):
        return
    day, month = mdate & 0x1F, (mdate >> 5) & 0xF
    seconds, minutes, hours = (mtime & 0x1F) * 2, (mtime >> 5) & 0x3F, mtime >> 11
    if not (1 <= day <= 31 and 1 <= month <= 12 and seconds < 60 and minutes < 60 and hours < 24):
        raise UnsafeArchiveError(
            f"entry {name!r}: {where} has an impossible DOS date or time ({mdate:#06x} {mtime:#06x})", subject=name
        )


def _parse_extra(extra: bytes, name: str, where: str) -> dict[int, bytes]:
    """The extra-field block as ``{tag: body}``: it must tile exactly, each tag at most once and on the
    allow-list."""
    fields: dict[int, bytes] = {}
    i = 0
    while i < len(extra):
        if i + 4 > len(extra):
            raise UnsafeArchiveError(f"entry {name!r}: {where} extra fields end in a partial header", subject=name)
        tag, ln = struct.unpack_from("<HH", extra, i)
        if i + 4 + ln > len(extra):
            raise UnsafeArchiveError(f"entry {name!r}: {where} extra field {tag:#06x} overruns", subject=name)
        if tag not in _ALLOWED_EXTRA:
            raise UnsafeArchiveError(
                f"entry {name!r}: {where} extra field {tag:#06x} is not allowed (it may carry a type, mode, name or "
                "link that some readers apply)",
                subject=name,
            )
        if tag in fields:
            raise UnsafeArchiveError(f"entry {name!r}: {where} repeats extra field {tag:#06x}", subject=name)
        fields[tag] = extra[i + 4 : i + 4 + ln]
        i += 4 + ln
    return fields


def _zip64_sizes(body: bytes | None, usize: int, csize: int, hoff: int, name: str) -> tuple[int, int, int]:
    """Resolve saturated central-directory fields from the ZIP64 extra, which must hold exactly those fields."""
    wanted = [usize == _U32, csize == _U32, hoff == _U32]
    need = 8 * sum(wanted)
    if body is None:
        if need:
            raise UnsafeArchiveError(f"entry {name!r}: ZIP64 sizes missing from its extra field", subject=name)
        return usize, csize, hoff
    if len(body) != need or not need:
        raise UnsafeArchiveError(
            f"entry {name!r}: its ZIP64 extra field holds {len(body)} bytes where {need} are needed", subject=name
        )
    vals = list(struct.unpack_from(f"<{sum(wanted)}Q", body))
    out = [vals.pop(0) if w else v for w, v in zip(wanted, (usize, csize, hoff), strict=True)]
    for value, small in zip(out, (usize, csize, hoff), strict=True):
        if small == _U32 and value < _U32:
            raise UnsafeArchiveError(f"entry {name!r}: ZIP64 used for a value that fits in 32 bits", subject=name)
    return out[0], out[1], out[2]


def _check_local_header(
    mm: mmap.mmap,
    hoff: int,
    raw_name: bytes,
    flags: int,
    method: int,
    crc: int,
    csize: int,
    usize: int,
    name: str,
    cd_offset: int,
) -> tuple[int, int]:
    """The local header must repeat the central directory: name, flags, method, extra fields on the allow-list
    (a local ZIP64 extra parsed and compared), CRC and sizes (zero or equal when a data descriptor follows)."""
    if hoff + _LFH_FMT.size > cd_offset or mm[hoff : hoff + 4] != _LFH:
        raise UnsafeArchiveError(f"entry {name!r}: no local header where the central directory says", subject=name)
    _, lneed, lflags, lmethod, ltime, ldate, lcrc, lcsize, lusize, lnlen, lxlen = _LFH_FMT.unpack_from(mm, hoff)
    _check_header_fields(lneed, ltime, ldate, name, "local header")
    lname = bytes(mm[hoff + _LFH_FMT.size : hoff + _LFH_FMT.size + lnlen])
    if lname != raw_name:
        raise UnsafeArchiveError(
            f"entry {name!r}: local header names it {lname.decode('utf-8', 'replace')!r}", subject=name
        )
    if lmethod != method or lflags != flags:  # the data-descriptor bit too: 7-Zip reports a header error
        raise UnsafeArchiveError(f"entry {name!r}: local header disagrees with the central directory", subject=name)
    if hoff + _LFH_FMT.size + lnlen + lxlen > cd_offset:
        raise UnsafeArchiveError(f"entry {name!r}: local header runs into the central directory", subject=name)
    lextra = bytes(mm[hoff + _LFH_FMT.size + lnlen : hoff + _LFH_FMT.size + lnlen + lxlen])
    lfields = _parse_extra(lextra, name, "local header")
    z64 = lfields.get(_ZIP64_EXTRA)
    if lusize == _U32 or lcsize == _U32:
        # APPNOTE 4.5.3: a local ZIP64 extra holds both sizes, uncompressed first.
        if z64 is None or len(z64) != 16:
            raise UnsafeArchiveError(f"entry {name!r}: local header's ZIP64 sizes are missing", subject=name)
        lusize, lcsize = struct.unpack("<QQ", z64)
    elif z64 is not None:
        raise UnsafeArchiveError(f"entry {name!r}: local ZIP64 extra field without ZIP64 sizes", subject=name)
    data_offset = hoff + _LFH_FMT.size + lnlen + lxlen
    end = data_offset + csize
    if end > cd_offset:
        raise UnsafeArchiveError(f"entry {name!r}: data runs into the central directory", subject=name)
    if lflags & _FLAG_DATA_DESCRIPTOR:
        if lcrc not in (0, crc) or (lcsize, lusize) not in ((0, 0), (csize, usize)):
            raise UnsafeArchiveError(f"entry {name!r}: local header sizes or CRC disagree", subject=name)
        # The descriptor repeats crc and sizes (32- or 64-bit, with an optional signature).
        desc = bytes(mm[end : min(end + 24, cd_offset)])
        off = 4 if desc[:4] == _DD else 0
        for width in (4, 8):
            fmt = "<III" if width == 4 else "<IQQ"
            n = struct.calcsize(fmt)
            if len(desc) >= off + n and struct.unpack_from(fmt, desc, off) == (crc, csize, usize):
                return data_offset, end + off + n
        raise UnsafeArchiveError(f"entry {name!r}: data descriptor disagrees with the central directory", subject=name)
    if (lcrc, lcsize, lusize) != (crc, csize, usize):
        raise UnsafeArchiveError(f"entry {name!r}: local header sizes or CRC disagree", subject=name)
    return data_offset, end


def _check_files_vs_dirs(seen: dict[str, str]) -> None:
    files = {k for k, v in seen.items() if not v.endswith("/")}
    for folded, name in seen.items():
        parts = folded.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafeArchiveError(f"entry {name!r} lies under a file of the same name", subject=name)


def _check_layout(entries: list[ZipEntry], cd_offset: int, where: str) -> None:
    """Entries must tile the file from offset 0 to the central directory: no overlap, no hidden bytes."""
    expected = 0
    for e in sorted(entries, key=lambda e: e.header_offset):
        if e.header_offset < expected:
            raise UnsafeArchiveError(f"entry {e.name!r} overlaps another entry", subject=e.name)
        if e.header_offset > expected:
            raise UnsafeArchiveError(
                f"{e.header_offset - expected} unaccounted bytes before entry {e.name!r}", subject=e.name
            )
        expected = e.end_offset
    if expected != cd_offset:
        raise UnsafeArchiveError(
            f"{cd_offset - expected} unaccounted bytes before the central directory", subject=where
        )


# -- writing ----------------------------------------------------------------------------------------------------


def _dos_time() -> tuple[int, int]:
    # A fixed timestamp (1980-01-01): signery's own entries are reproducible byte for byte.
    return 0, (0 << 9) | (1 << 5) | 1


def rewrite_zip(
    archive: ZipArchive,
    out: IO[bytes],
    *,
    drop: Iterable[str] = (),
    add: Sequence[tuple[str, bytes]] = (),
    comment: bytes | None = None,
) -> None:
    """Write a copy of ``archive`` to ``out``: without the entries named in ``drop``, with ``add`` appended.

    Kept entries are copied byte for byte (local header, data, descriptor, central record), so nothing about them
    changes. Dropped entries must lie physically after every kept entry (signery always appends its own entries
    last); otherwise the archive is rebuilt entry by entry through :func:`_rebuild`.
    """
    drop_set = set(drop)
    for name, _ in add:
        check_entry_name(name)
    kept = [e for e in archive.entries if e.name not in drop_set]
    dropped = [e for e in archive.entries if e.name in drop_set]
    new_comment = archive.comment if comment is None else comment
    if len(new_comment) > _MAX_COMMENT:
        raise MalformedError("ZIP comment too long")
    if any(name in {e.name for e in kept} for name, _ in add):
        raise UnsafeArchiveError("refusing to add an entry that already exists", subject=add[0][0])
    if dropped and kept and min(e.header_offset for e in dropped) < max(e.end_offset for e in kept):
        _rebuild(archive, out, kept, add, new_comment)
        return
    copy_end = max((e.end_offset for e in kept), default=0)
    for start in range(0, copy_end, 64 << 20):
        out.write(archive.raw_bytes(start, min(copy_end, start + (64 << 20))))
    records = [e.cd_record for e in kept]
    pos = copy_end
    _finish(out, records, pos, add, new_comment)


def _finish(
    out: IO[bytes], records: list[bytes], pos: int, add: Sequence[tuple[str, bytes]], comment: bytes
) -> None:
    """Append the new entries after the copied ones at ``pos``, then the central directory and end records."""
    for name, data in add:
        lfh, cdh = _new_entry_headers(name, data, pos)
        out.write(lfh)
        out.write(data)
        pos += len(lfh) + len(data)
        records.append(cdh)
    _write_central_directory(out, records, pos, comment)


def _new_entry_headers(name: str, data: bytes, offset: int) -> tuple[bytes, bytes]:
    raw_name = name.encode("utf-8")
    crc = zlib.crc32(data)
    t, d = _dos_time()
    flags = _FLAG_UTF8 if not raw_name.isascii() else 0
    if offset >= _U32 or len(data) >= _U32:
        raise UnsafeArchiveError("archives over 4 GiB cannot take new entries yet", subject=name)
    lfh = _LFH_FMT.pack(_LFH, 20, flags, STORED, t, d, crc, len(data), len(data), len(raw_name), 0) + raw_name
    cdh = (
        _CDH_FMT.pack(
            _CDH,
            (_UNIX << 8) | 20,
            20,
            flags,
            STORED,
            t,
            d,
            crc,
            len(data),
            len(data),
            len(raw_name),
            0,
            0,
            0,
            0,
            (stat.S_IFREG | 0o644) << 16,
            offset,
        )
        + raw_name
    )
    return lfh, cdh


def _write_central_directory(out: IO[bytes], records: Sequence[bytes], cd_offset: int, comment: bytes) -> None:
    cd = b"".join(records)
    out.write(cd)
    n = len(records)
    if n >= _U16 or cd_offset >= _U32 or len(cd) >= _U32:
        eocd64_off = cd_offset + len(cd)
        out.write(_EOCD64_FMT.pack(_EOCD64, 44, 45, 45, 0, 0, n, n, len(cd), cd_offset))
        out.write(_EOCD64_LOC_FMT.pack(_EOCD64_LOC, 0, eocd64_off, 1))
        out.write(
            _EOCD_FMT.pack(
                _EOCD, 0, 0, min(n, _U16), min(n, _U16), min(len(cd), _U32), min(cd_offset, _U32), len(comment)
            )
        )
    else:
        out.write(_EOCD_FMT.pack(_EOCD, 0, 0, n, n, len(cd), cd_offset, len(comment)))
    out.write(comment)


def _rebuild(
    archive: ZipArchive, out: IO[bytes], kept: Sequence[ZipEntry], add: Sequence[tuple[str, bytes]], comment: bytes
) -> None:
    """Slow path: re-emit each kept entry (raw local bytes) at a new offset with a patched central record."""
    indexed: list[tuple[int, bytes]] = []
    pos = 0
    for e in sorted(kept, key=lambda e: e.header_offset):
        if e.header_offset >= _U32 or pos >= _U32 or struct.unpack_from("<I", e.cd_record, 42)[0] == _U32:
            raise UnsafeArchiveError("cannot reorder entries of a ZIP64 archive", subject=e.name)
        for start in range(e.header_offset, e.end_offset, 64 << 20):
            out.write(archive.raw_bytes(start, min(e.end_offset, start + (64 << 20))))
        rec = bytearray(e.cd_record)
        struct.pack_into("<I", rec, 42, pos)
        indexed.append((e.position, bytes(rec)))
        pos += e.end_offset - e.header_offset
    records = [rec for _, rec in sorted(indexed)]  # central-directory order stays as it was
    _finish(out, records, pos, add, comment)


def is_zip(path: Path) -> bool:
    """Whether ``path`` starts like a ZIP archive (cheap sniff; :meth:`ZipArchive.open` decides)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in (_LFH, _EOCD)


__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveLimits",
    "ZipArchive",
    "ZipEntry",
    "check_entry_name",
    "is_zip",
    "rewrite_zip",
]
