"""A hand-rolled ZIP writer for tests: every field of every header under the test's control."""

from __future__ import annotations

import stat
import struct
import zlib
from dataclasses import dataclass

UNIX = 3


@dataclass
class E:
    """One entry to craft. ``None`` fields take the honest value."""

    name: bytes
    data: bytes = b"hello\n"
    method: int = 0
    flags: int = 0
    made_by: int = (UNIX << 8) | 20
    mode: int = stat.S_IFREG | 0o644
    crc: int | None = None
    csize: int | None = None
    usize: int | None = None
    local_name: bytes | None = None
    local_method: int | None = None
    local_flags: int | None = None
    local_crc: int | None = None
    local_usize: int | None = None
    descriptor: bytes | None = None  # bytes written after the data (with flags |= 8)
    header_offset: int | None = None  # override the central directory's offset
    gap_before: bytes = b""
    cd_extra: bytes = b""
    local_extra: bytes = b""
    body: bytes | None = None  # raw (compressed) bytes instead of the honest compression of ``data``
    comment: bytes = b""  # the entry's comment in its central-directory record
    local_csize: int | None = None
    dos_attr: int = 0  # the low 16 bits of the external attributes (MS-DOS attributes: 0x10 is a directory)


def _payload(e: E) -> bytes:
    if e.body is not None:
        return e.body
    if e.method == 8:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(e.data) + c.flush()
    return e.data


def build(
    entries: list[E],
    *,
    prefix: bytes = b"",
    suffix: bytes = b"",
    comment: bytes = b"",
    disk: int = 0,
    count: int | None = None,
    cd_gap: bytes = b"",
) -> bytes:
    out = bytearray(prefix)
    records = []
    for e in entries:
        out += e.gap_before
        off = len(out)
        body = _payload(e)
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        csize = len(body) if e.csize is None else e.csize
        usize = len(e.data) if e.usize is None else e.usize
        lname = e.name if e.local_name is None else e.local_name
        lflags = e.flags if e.local_flags is None else e.local_flags
        lmethod = e.method if e.local_method is None else e.local_method
        if e.descriptor is not None:
            lcrc, lcs, lus = 0, 0, 0
        else:
            lcrc = crc if e.local_crc is None else e.local_crc
            lcs = csize if e.local_csize is None else e.local_csize
            lus = usize if e.local_usize is None else e.local_usize
        out += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, lflags, lmethod, 0, 0x21, lcrc, lcs, lus, len(lname), len(e.local_extra)
        )
        out += lname + e.local_extra + body
        if e.descriptor is not None:
            out += e.descriptor
        hoff = off if e.header_offset is None else e.header_offset
        records.append(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                e.made_by,
                20,
                e.flags,
                e.method,
                0,
                0x21,
                crc,
                csize,
                usize,
                len(e.name),
                len(e.cd_extra),
                len(e.comment),
                0,
                0,
                ((e.mode << 16) | e.dos_attr) & 0xFFFFFFFF,
                hoff,
            )
            + e.name
            + e.cd_extra
            + e.comment
        )
    out += cd_gap
    cd_off = len(out)
    cd = b"".join(records)
    out += cd
    n = len(entries) if count is None else count
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", disk, disk, n, n, len(cd), cd_off, len(comment)) + comment
    return bytes(out) + suffix
