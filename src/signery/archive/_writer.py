"""Append-only rewriting of a validated archive: kept entries are copied byte for byte."""


from __future__ import annotations

import stat
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import IO

from ..errors import MalformedError, UnsafeArchiveError
from ._model import (
    _CDH,
    _CDH_FMT,
    _EOCD,
    _EOCD64,
    _EOCD64_FMT,
    _EOCD64_LOC,
    _EOCD64_LOC_FMT,
    _EOCD_FMT,
    _FLAG_UTF8,
    _LFH,
    _LFH_FMT,
    _MAX_COMMENT,
    _U16,
    _U32,
    _UNIX,
    STORED,
    ZipEntry,
)
from ._reader import ZipArchive
from ._rules import check_entry_name, fold_name

# -- writing ----------------------------------------------------------------------------------------------------


def _dos_time() -> tuple[int, int]:
    # A fixed timestamp (1980-01-01): signery's own entries are reproducible byte for byte.
    return 0, (0 << 9) | (1 << 5) | 1


def _check_additions(kept: Sequence[ZipEntry], names: Sequence[str]) -> None:
    """Refuse additions that the reader would refuse in the output: a name that folds to a kept entry's
    (``.SIGNERY/Signatures.json``), one under a kept file (a file called ``.signery``), or one a kept entry lies
    under. So signing never writes a package that verification refuses."""
    folded = {fold_name(e.name): e for e in kept}
    for name in names:
        key = fold_name(name)
        parts = key.split("/")
        clash = folded.get(key) or next(
            (e for i in range(1, len(parts)) if (e := folded.get("/".join(parts[:i]))) and not e.is_dir), None
        )
        clash = clash or next((e for k, e in folded.items() if k.startswith(key + "/")), None)
        if clash is not None:
            raise UnsafeArchiveError(
                f"refusing to add {name!r}: the package's entry {clash.name!r} has the same or an enclosing name",
                subject=clash.name,
            )


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
    _check_additions(kept, [name for name, _ in add])
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


