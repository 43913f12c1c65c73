"""The byte-level layer of :mod:`signery.host.tarball`: the gzip header and stream, and one tar header block.

Private to :mod:`signery.host.tarball`, whose documentation states the rules; this module applies the ones that
concern a single gzip header, a decompressed stream that must end where its gzip member ends, a 512-byte tar
header (magic, checksum, plain octal fields, the areas where other readers look for more), PAX records, GNU long
names, and a member's mode. Everything about the sequence of members (bounds, types, names, the end of the
archive) is :mod:`signery.host.tarball`'s.
"""

from __future__ import annotations

import re
import stat
import struct
import zlib
from typing import IO

from ..errors import MalformedError, UnsafeArchiveError

CHUNK = 1 << 20  # decompress and copy in 1 MiB steps: bounded memory for any member size
_IN_CHUNK = 64 << 10  # compressed bytes read per step
MAX_EXTENDED_HEADER = 64 << 10  # a PAX header or GNU long name; real ones are a few hundred bytes
GZIP_MAGIC = b"\x1f\x8b"
_GZIP_MAX_STRING = 4096  # the gzip header's file name and comment
_GZIP_HEAD = 10 + 2 + 0xFFFF + 2 * (_GZIP_MAX_STRING + 1) + 2  # the largest header accepted
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16
BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
_USTAR = b"ustar\x0000"
_GNU = b"ustar  \x00"
_OCTAL = re.compile(rb" *([0-7]*)[ \x00]*")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_PAX_TIME = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_PAX_CONTROL = re.compile("[\x00-\x1f\x7f]")
_PAX_KEYS = frozenset({"path", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname"})
_NUMERIC_FIELDS = (
    ("mode", 100, 108),
    ("uid", 108, 116),
    ("gid", 116, 124),
    ("size", 124, 136),
    ("mtime", 136, 148),
    ("devmajor", 329, 337),
    ("devminor", 337, 345),
)
TYPE_NAMES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"7": "a contiguous file (read as a regular file by some readers only)",
    b"S": "a GNU sparse file",
    b"D": "a GNU directory dump",
    b"M": "a GNU multi-volume continuation",
    b"N": "an old GNU long-name record",
    b"V": "a GNU volume label",
    b"X": "a Solaris extended header (Python reads it as PAX, Go does not)",
}


# -- the gzip stream ---------------------------------------------------------------------------------------------


def _gzip_header_end(head: bytes, complete: bool, where: str) -> int:
    """Check the gzip header at the start of ``head`` and return its length.

    ``complete`` says that ``head`` is the whole file (so running out of bytes means a truncated header).
    """

    def bad(what: str) -> MalformedError:
        return MalformedError(f"{where} is not a readable .tar.gz: {what}", subject=where)

    def short(what: str) -> MalformedError:
        return bad(f"the gzip header is truncated ({what})" if complete else f"the gzip {what} is too long")

    if not head:
        raise bad("the file is empty, not gzip")
    if len(head) < 10:
        raise bad("the gzip header is truncated" if head[:2] == GZIP_MAGIC[: len(head[:2])] else "not gzip")
    if head[:2] != GZIP_MAGIC:
        raise bad("not gzip")
    if head[2] != 8:
        raise bad(f"unknown gzip compression method {head[2]}")
    flags = head[3]
    if flags & 0xE0:
        raise bad(f"reserved gzip header flags set ({flags:#04x})")
    pos = 10
    if flags & _FEXTRA:
        if pos + 2 > len(head):
            raise short("extra field")
        (xlen,) = struct.unpack_from("<H", head, pos)
        pos += 2 + xlen
        if pos > len(head):
            raise short("extra field")
    for flag, what in ((_FNAME, "file name"), (_FCOMMENT, "comment")):
        if flags & flag:
            end = head.find(b"\x00", pos, pos + _GZIP_MAX_STRING + 1)
            if end < 0:
                if complete and len(head) - pos <= _GZIP_MAX_STRING:
                    raise short(what)
                raise bad(f"the gzip header's {what} is longer than {_GZIP_MAX_STRING} bytes")
            pos = end + 1
    if flags & _FHCRC:
        if pos + 2 > len(head):
            raise short("header CRC")
        (crc16,) = struct.unpack_from("<H", head, pos)
        if crc16 != zlib.crc32(head[:pos]) & 0xFFFF:
            raise bad("the gzip header CRC does not match")
        pos += 2
    return pos


class Gunzip:
    """The decompressed bytes of a file that must hold exactly one gzip member and nothing after it."""

    def __init__(self, fh: IO[bytes], where: str) -> None:
        self._fh = fh
        self._where = where
        head = fh.read(_GZIP_HEAD)
        _gzip_header_end(head, len(head) < _GZIP_HEAD, where)
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # zlib parses the header again and checks CRC-32/ISIZE
        self._pending = head
        self._buf = bytearray()
        self._pos = 0
        self.produced = 0  # decompressed bytes handed out so far

    def _bad(self, what: str) -> MalformedError:
        return MalformedError(f"{self._where} is not a readable .tar.gz: {what}", subject=self._where)

    def _fill(self) -> bool:
        """Decompress at most one more chunk into the buffer; ``False`` once the gzip member has ended."""
        d = self._d
        while not d.eof:
            if d.unconsumed_tail:
                data = d.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self._fh.read(_IN_CHUNK)
                if not data:
                    raise self._bad("the gzip stream is truncated")
            try:
                out = d.decompress(data, CHUNK)
            except zlib.error as exc:
                raise self._bad(f"corrupt gzip data ({exc})") from None
            if d.eof:
                self._check_nothing_follows()
            if out:
                if self._pos:
                    del self._buf[: self._pos]
                    self._pos = 0
                self._buf += out
                return True
        return False

    def _check_nothing_follows(self) -> None:
        rest = self._d.unused_data or self._pending or self._fh.read(2)
        if rest:
            what = "a second gzip member" if rest[:2] == GZIP_MAGIC else "bytes that are not gzip data"
            raise UnsafeArchiveError(
                f"{self._where}: {what} follows the end of the first gzip member (Go, GNU tar and bsdtar read on "
                "into it, so they would extract contents that were never checked)",
                subject=self._where,
            )

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only where the decompressed stream ends."""
        while len(self._buf) - self._pos < n and self._fill():
            pass
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += len(out)
        self.produced += len(out)
        return out

    def read_exact(self, n: int, what: str) -> bytes:
        out = self.read(n)
        if len(out) != n:
            raise self._bad(f"the tar stream is truncated ({what})")
        return out


# -- one tar header ----------------------------------------------------------------------------------------------


def _nts(field: bytes) -> bytes:
    end = field.find(b"\x00")
    return field if end < 0 else field[:end]


class Header:
    """One 512-byte header block, checked and decoded."""

    __slots__ = ("block", "fields", "gnu", "offset", "type")

    def __init__(self, block: bytes, offset: int, where: str) -> None:
        self.block = block
        self.offset = offset
        self.type = block[156:157]

        def bad(what: str) -> MalformedError:
            return MalformedError(f"{where}: tar header at offset {offset} {what}", subject=where)

        magic = block[257:265]
        if magic not in (_USTAR, _GNU):
            raise bad(f"has no ustar or GNU magic ({magic!r})")
        self.gnu = magic == _GNU
        self.fields: dict[str, int] = {}
        for field, start, end in (*_NUMERIC_FIELDS, ("checksum", 148, 156)):
            raw = block[start:end]
            if raw[0] in (0x80, 0xFF):
                raise UnsafeArchiveError(
                    f"{where}: tar header at offset {offset} ({self.raw_name_text()!r}) spells its {field} in "
                    "base-256, which signery does not accept",
                    subject=self.raw_name_text() or where,
                )
            m = _OCTAL.fullmatch(raw)
            if m is None:
                raise bad(f"has a {field} field that is not plain octal ({raw!r}): readers parse it differently")
            self.fields[field] = int(m.group(1) or b"0", 8)
        unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
        signed = sum(struct.unpack("148b8x356b", block)) + 8 * 0x20
        if self.fields["checksum"] not in (unsigned, signed):
            raise bad("has a bad checksum (damaged, or not a tar header)")
        if self.gnu and block[345:500].strip(b"\x00"):
            raise UnsafeArchiveError(
                f"{where}: GNU tar header at offset {offset} has data where ustar keeps its name prefix (Python "
                "reads it as part of the name)",
                subject=self.raw_name_text() or where,
            )
        if not self.gnu and block[500:512].strip(b"\x00"):
            raise UnsafeArchiveError(
                f"{where}: ustar header at offset {offset} has data after its name prefix (Go reads it as a star "
                "header with a shorter prefix)",
                subject=self.raw_name_text() or where,
            )

    @property
    def size(self) -> int:
        return self.fields["size"]

    @property
    def mode(self) -> int:
        return self.fields["mode"]

    def raw_name(self) -> bytes:
        name = _nts(self.block[0:100])
        if not self.gnu:
            prefix = _nts(self.block[345:500])
            if prefix:
                name = prefix + b"/" + name
        return name

    def raw_name_text(self) -> str:
        return self.raw_name().decode("utf-8", "replace")

    def link_name(self) -> bytes:
        return _nts(self.block[157:257])


# -- extended headers and modes -----------------------------------------------------------------------------------


CHAIN_NAMES = {b"x": "a PAX header", b"L": "a GNU long name", b"K": "a GNU long link name"}


def gnu_long_text(data: bytes, label: str, offset: int, where: str, subject: str) -> str:
    """A GNU long (link) name record's text: the name and its terminating NUL (readers cut at the first NUL)."""
    raw = data.rstrip(b"\x00")
    if b"\x00" in raw:
        raise unsafe(f"{where}: {label} at offset {offset} holds a NUL byte", subject)
    if not raw:
        raise unsafe(f"{where}: empty {label} at offset {offset} (Go ignores it, others do not)", subject)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise unsafe(f"{where}: {label} {raw!r} is not UTF-8", repr(raw)) from None


def unsafe(message: str, subject: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(message, subject=subject)


def parse_pax(data: bytes, where: str, subject: str) -> dict[str, str]:
    """PAX records ``"%d %s=%s\\n"``, parsed exactly (Python skips what it cannot parse; Go fails)."""

    def bad(what: str) -> MalformedError:
        return MalformedError(f"{where}: PAX header of {subject!r}: {what}", subject=subject)

    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        length_text = data[pos:space].decode("ascii", "replace") if space > pos else ""
        if not _DECIMAL.fullmatch(length_text):
            raise bad(f"record at byte {pos} has no decimal length")
        end = pos + int(length_text)
        if end <= space + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise bad(f"record at byte {pos} has a wrong length")
        key_raw, eq, value_raw = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key_raw:
            raise bad(f"record at byte {pos} has no key")
        try:
            key, value = key_raw.decode("utf-8"), value_raw.decode("utf-8")
        except UnicodeDecodeError:
            raise unsafe(f"{where}: PAX header of {subject!r}: record {key_raw!r} is not UTF-8", subject) from None
        if key in records:
            raise unsafe(f"{where}: PAX header of {subject!r} sets {key!r} twice", subject)
        records[key] = value
        pos = end
    for key, value in records.items():
        if key not in _PAX_KEYS:
            raise unsafe(
                f"{where}: PAX header of {subject!r} sets {key!r}, which signery does not accept (readers act on it "
                f"differently, or it changes what is extracted)",
                subject,
            )
        if not value:
            raise unsafe(f"{where}: PAX header of {subject!r} sets {key!r} to nothing (readers differ)", subject)
        if _PAX_CONTROL.search(value) and key != "path":  # a path's control characters are refused by name
            raise unsafe(f"{where}: PAX header of {subject!r}: {key!r} holds a control character", subject)
        if key in ("size", "uid", "gid") and not _DECIMAL.fullmatch(value):
            raise bad(f"{key!r} is not a decimal number ({value[:40]!r})")
        if key in ("mtime", "atime", "ctime") and not _PAX_TIME.fullmatch(value):
            raise bad(f"{key!r} is not a time ({value[:40]!r})")
    return records


def check_mode(mode: int, is_dir: bool, name: str) -> None:
    kind = "directory" if is_dir else "file"
    extra = mode & ~0o7777
    if extra and extra != (stat.S_IFDIR if is_dir else stat.S_IFREG):
        raise unsafe(f"{kind} {name!r} has mode {mode:#o}, which names another file type", name)
    for bit, what in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky")):
        if mode & bit:
            raise unsafe(f"{kind} {name!r} has the {what} bit (mode {mode & 0o7777:04o})", name)
    if mode & stat.S_IWOTH:
        raise unsafe(f"{kind} {name!r} is world-writable (mode {mode & 0o7777:04o})", name)
    if not is_dir and not mode & stat.S_IRUSR:
        raise unsafe(f"file {name!r} is not readable by its owner (mode {mode & 0o7777:04o})", name)
    if not is_dir and mode & (stat.S_IXGRP | stat.S_IXOTH) and not mode & stat.S_IXUSR:
        raise unsafe(
            f"file {name!r} is executable by group or others but not by its owner (mode {mode & 0o7777:04o}): "
            "other extractors would write it executable, signery would not",
            name,
        )


__all__ = [
    "BLOCK",
    "CHAIN_NAMES",
    "CHUNK",
    "GZIP_MAGIC",
    "MAX_EXTENDED_HEADER",
    "TYPE_NAMES",
    "ZERO_BLOCK",
    "Gunzip",
    "Header",
    "check_mode",
    "gnu_long_text",
    "parse_pax",
    "unsafe",
]
