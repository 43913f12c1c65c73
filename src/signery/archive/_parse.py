"""The reference ZIP parser: every refusal, with its reason and the entry named, is made here.

The format is parsed by hand (PKWARE APPNOTE 6.3) because :mod:`zipfile` is deliberately lenient: it accepts
duplicate names, overlapping entries and prefixed data, which are exactly the ambiguities attackers use.
"""


from __future__ import annotations

import mmap
import re
import stat
import struct

from ..errors import MalformedError, UnsafeArchiveError
from ._model import (
    _CDH,
    _CDH_FMT,
    _DD,
    _EOCD,
    _EOCD64,
    _EOCD64_FMT,
    _EOCD64_LOC,
    _EOCD64_LOC_FMT,
    _EOCD_FMT,
    _FLAG_DATA_DESCRIPTOR,
    _FLAG_ENCRYPTED,
    _FLAG_MASKED_HEADERS,
    _FLAG_STRONG_ENCRYPTION,
    _FLAG_UTF8,
    _LFH,
    _LFH_FMT,
    _MAX_COMMENT,
    _MAX_EMPTY_DEFLATE,
    _U16,
    _U32,
    DEFLATED,
    STORED,
    ArchiveLimits,
    ZipEntry,
)
from ._rules import _fold, check_entry_name, check_mode

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
        # Each of them zero (Go, Python) or the true value (libarchive writes the size but a zero CRC): readers of
        # data-descriptor entries take these values from the descriptor or the central directory.
        if lcrc not in (0, crc) or lcsize not in (0, csize) or lusize not in (0, usize):
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


