"""The one strict reader of gzipped tar packages (Mattermost's ``.tar.gz``): regular files and directories only.

The installer extracts bundles through it and the registry vets uploads through it, so there is no second tar
reader in signery that could see other contents. Other extractors read the same bytes (Go's ``compress/gzip`` +
``archive/tar`` as the Mattermost server does, GNU tar, bsdtar, Python's :mod:`tarfile`), so everything that two
of them could read differently is refused, naming the member (or the file, for stream-level faults) and the rule.

The format is parsed here by hand, one forward pass over the decompressed stream, rather than through
:mod:`tarfile`: the rules below are about the raw bytes (what follows the first gzip member or the end-of-archive
marker, which header blocks carry which names, how numeric fields are spelled) and :mod:`tarfile` hides them, or
reads them one way where Go reads them another (it applies global PAX headers, stops silently at a damaged header,
takes ``123\\0garbage`` for 123).

Rules (``unsafe-archive`` unless said otherwise):

- Stream: exactly one gzip member, decompressed with :mod:`zlib` in bounded chunks; nothing may follow it, neither
  a second member (Go, GNU tar and bsdtar read on into it; signery used to stop) nor other bytes. The gzip header
  is checked by hand: method 8, no reserved flags, bounded extra field, file name and comment, a correct header
  CRC when flagged. Undecodable or truncated gzip is ``malformed``.
- End: the archive ends with two zero blocks; after them only zero bytes may follow (GNU tar pads to its
  10,240-byte record), at most 1 MiB. A lone zero block followed by anything else is refused (Python stops there,
  Go fails, GNU tar reads on). A missing end marker is ``malformed`` (truncated).
- Headers (``malformed`` when undecodable): a valid checksum; ``ustar\\0`` + ``00`` or GNU ``ustar  \\0`` magic;
  every numeric field plain octal (optional leading spaces, then only NUL/space), never base-256; in ustar headers
  the 12 bytes after ``prefix`` are zero (Go would read a star-format prefix and times there), in GNU headers the
  155 bytes where ustar keeps ``prefix`` are zero (Python would take GNU time fields there for a prefix). A ustar
  name is ``prefix/name`` when ``prefix`` is set, as every reader builds it. Padding after data is zero.
- Types: regular files (``0``, or NUL when the name has no trailing slash) and directories (``5``, no data, no
  link target). Links, devices, FIFOs, sparse files, contiguous files, volume labels, multi-volume and every
  unknown type are refused. A regular file whose name ends in ``/`` is refused (some readers make it a directory).
- Extended headers: a member may carry one PAX extended header (``x``) or one GNU long name (``L``), never both,
  never two of either: each is a source of the member's name and readers disagree on which wins. PAX records
  must parse exactly (no leftovers), keys unique, values non-empty UTF-8 without control characters, and only
  ``path``, ``size`` (equal to the header's), ``mtime``, ``atime``, ``ctime``, ``uid``, ``gid``, ``uname`` and
  ``gname`` are accepted (numbers in decimal); ``linkpath``, ``hdrcharset``, GNU sparse keys, vendor keys
  (``SCHILY.*``, ``LIBARCHIVE.*``: extended attributes, flags) and anything else a reader may act on are refused.
  PAX global headers (``g``: Python applies them to later members, Go ignores them) and GNU long link names
  (``K``) are refused. Each extended header holds at most 64 KiB.
- Modes: no setuid, setgid or sticky bit; nothing world-writable; files readable by their owner (mode 000 is
  refused; directory modes, which every extractor applies only after writing what they hold, are held to the
  first two rules alone, as in ZIP: Python's ``tarfile`` writes bare directories 0644); no execute bit for
  group or others on a file
  whose owner lacks it (so "executable" means the same to every extractor); no file-type bits other than the
  member's own.
- Names: UTF-8, checked by :func:`signery.archive.check_entry_name` (after dropping a leading ``./``; ``.`` itself
  is the extraction root) and unique under :func:`signery.archive.fold_name`; nothing lies under a file.
- Bounds, checked before anything else about a member is judged: member count, per-member and total sizes, and
  the ratio of declared bytes to the compressed file size (:class:`TarLimits`).

Modes on install: a ``.tar.gz`` is signed as whole bytes by its detached OpenPGP signature, so the modes in it are
covered by the signature; :func:`extract_tar` keeps the owner's execute bit (a file is written 0755 when its mode
has ``u+x``, 0644 otherwise) and writes directories 0755, whatever else the mode says (less what the umask
removes). ZIP packages' signatures cover content digests, not modes: the installer writes their files 0644.

:func:`scan_tar` validates the whole bundle in one streaming pass without writing anything; :func:`extract_tar`
makes a second pass with the same parser and writes exactly the members the scan listed, each checked again.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..archive import check_entry_name, fold_name
from ..errors import MalformedError, UnsafeArchiveError

_CHUNK = 1 << 20  # decompress and copy in 1 MiB steps: bounded memory for any member size
_IN_CHUNK = 64 << 10  # compressed bytes read per step
MAX_MANIFEST_BYTES = 1 << 20  # default capture bound (signery.package.MAX_MANIFEST_BYTES, the same)
MAX_EXTENDED_HEADER = 64 << 10  # a PAX header or GNU long name; real ones are a few hundred bytes
MAX_TRAILER = 1 << 20  # zero bytes after the end-of-archive marker (GNU tar pads to 10 KiB records)
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_MAX_STRING = 4096  # the gzip header's file name and comment
_GZIP_HEAD = 10 + 2 + 0xFFFF + 2 * (_GZIP_MAX_STRING + 1) + 2  # the largest header accepted
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
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
_TYPE_NAMES = {
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


@dataclass(frozen=True)
class TarLimits:
    """Bounds on a bundle: member count (inode exhaustion), total and per-member uncompressed bytes (bombs), and
    the ratio of the declared total to the compressed file size once the total passes ``ratio_floor``."""

    max_entries: int = 20_000
    max_total_size: int = 2 << 30
    max_entry_size: int = 1 << 30
    max_ratio: int = 200
    ratio_floor: int = 64 << 20


DEFAULT_TAR_LIMITS = TarLimits()


@dataclass(frozen=True)
class TarMember:
    name: str  # normalised: no leading "./", no trailing "/"
    is_dir: bool
    size: int
    executable: bool  # the owner's execute bit (files only)
    mode: int = 0  # permission bits as stored (already checked against the mode rules)


@dataclass(frozen=True)
class TarListing:
    members: tuple[TarMember, ...]
    manifests: dict[str, bytes]  # name -> content of every file the scan was asked to capture (small, bounded)


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
        raise bad("the gzip header is truncated" if head[:2] == _GZIP_MAGIC[: len(head[:2])] else "not gzip")
    if head[:2] != _GZIP_MAGIC:
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


class _Gunzip:
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
                out = d.decompress(data, _CHUNK)
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
            what = "a second gzip member" if rest[:2] == _GZIP_MAGIC else "bytes that are not gzip data"
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


# -- the tar stream ----------------------------------------------------------------------------------------------


def _nts(field: bytes) -> bytes:
    end = field.find(b"\x00")
    return field if end < 0 else field[:end]


class _Header:
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


@dataclass
class _Item:
    """A member as the walk yields it: ``body`` reads its data (what is left unread is skipped afterwards)."""

    member: TarMember | None  # None for the extraction root ("." / "./")
    body: _Body


class _Body:
    def __init__(self, stream: _Gunzip, size: int, name: str) -> None:
        self._stream = stream
        self.remaining = size
        self._name = name

    def chunks(self) -> Iterator[bytes]:
        while self.remaining:
            chunk = self._stream.read_exact(min(self.remaining, _CHUNK), f"in the data of {self._name!r}")
            self.remaining -= len(chunk)
            yield chunk

    def skip(self) -> None:
        for _ in self.chunks():
            pass


_CHAIN_NAMES = {b"x": "a PAX header", b"L": "a GNU long name", b"K": "a GNU long link name"}


def _gnu_long_text(data: bytes, label: str, offset: int, where: str, subject: str) -> str:
    """A GNU long (link) name record's text: the name and its terminating NUL (readers cut at the first NUL)."""
    raw = data.rstrip(b"\x00")
    if b"\x00" in raw:
        raise _unsafe(f"{where}: {label} at offset {offset} holds a NUL byte", subject)
    if not raw:
        raise _unsafe(f"{where}: empty {label} at offset {offset} (Go ignores it, others do not)", subject)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _unsafe(f"{where}: {label} {raw!r} is not UTF-8", repr(raw)) from None


def _unsafe(message: str, subject: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(message, subject=subject)


def _parse_pax(data: bytes, where: str, subject: str) -> dict[str, str]:
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
            raise _unsafe(f"{where}: PAX header of {subject!r}: record {key_raw!r} is not UTF-8", subject) from None
        if key in records:
            raise _unsafe(f"{where}: PAX header of {subject!r} sets {key!r} twice", subject)
        records[key] = value
        pos = end
    for key, value in records.items():
        if key not in _PAX_KEYS:
            raise _unsafe(
                f"{where}: PAX header of {subject!r} sets {key!r}, which signery does not accept (readers act on it "
                f"differently, or it changes what is extracted)",
                subject,
            )
        if not value:
            raise _unsafe(f"{where}: PAX header of {subject!r} sets {key!r} to nothing (readers differ)", subject)
        if _PAX_CONTROL.search(value) and key != "path":  # a path's control characters are refused by name
            raise _unsafe(f"{where}: PAX header of {subject!r}: {key!r} holds a control character", subject)
        if key in ("size", "uid", "gid") and not _DECIMAL.fullmatch(value):
            raise bad(f"{key!r} is not a decimal number ({value[:40]!r})")
        if key in ("mtime", "atime", "ctime") and not _PAX_TIME.fullmatch(value):
            raise bad(f"{key!r} is not a time ({value[:40]!r})")
    return records


def _check_mode(mode: int, is_dir: bool, name: str) -> None:
    kind = "directory" if is_dir else "file"
    extra = mode & ~0o7777
    if extra and extra != (stat.S_IFDIR if is_dir else stat.S_IFREG):
        raise _unsafe(f"{kind} {name!r} has mode {mode:#o}, which names another file type", name)
    for bit, what in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky")):
        if mode & bit:
            raise _unsafe(f"{kind} {name!r} has the {what} bit (mode {mode & 0o7777:04o})", name)
    if mode & stat.S_IWOTH:
        raise _unsafe(f"{kind} {name!r} is world-writable (mode {mode & 0o7777:04o})", name)
    if not is_dir and not mode & stat.S_IRUSR:
        raise _unsafe(f"file {name!r} is not readable by its owner (mode {mode & 0o7777:04o})", name)
    if not is_dir and mode & (stat.S_IXGRP | stat.S_IXOTH) and not mode & stat.S_IXUSR:
        raise _unsafe(
            f"file {name!r} is executable by group or others but not by its owner (mode {mode & 0o7777:04o}): "
            "other extractors would write it executable, signery would not",
            name,
        )


def _walk(path: Path, limits: TarLimits, where: str) -> Iterator[_Item]:
    """Every member of the bundle at ``path``, checked; raises at the first refusal."""
    with Path(path).open("rb") as fh:
        compressed = max(os.fstat(fh.fileno()).st_size, 1)
        stream = _Gunzip(fh, where)
        count = 0
        total = 0
        pax: dict[str, str] | None = None
        long_name: str | None = None
        chain: list[bytes] = []  # the extended headers before the coming member
        while True:
            offset = stream.produced
            block = stream.read(_BLOCK)
            if not block:
                raise MalformedError(
                    f"{where} is not a readable .tar.gz: the tar stream ends without its end-of-archive marker "
                    "(truncated)",
                    subject=where,
                )
            if len(block) < _BLOCK:
                raise MalformedError(f"{where} is not a readable .tar.gz: truncated tar header", subject=where)
            if block == _ZERO_BLOCK:
                if chain:
                    raise MalformedError(
                        f"{where}: an extended header at the end of the archive describes no member", subject=where
                    )
                _check_end(stream, where)
                return
            header = _Header(block, offset, where)
            kind = header.type
            if kind in (b"x", b"L", b"K"):
                label = {b"x": "PAX header", b"L": "GNU long name", b"K": "GNU long link name"}[kind]
                prior = (pax or {}).get("path") or long_name  # a name the chain gave the member already
                known = prior or header.raw_name_text() or where
                if header.size > MAX_EXTENDED_HEADER:
                    raise _unsafe(f"{where}: {label} of {header.size} bytes (at offset {offset})", known)
                data = stream.read_exact(header.size, f"{label} at offset {offset}")
                _check_padding(stream, header.size, known, where)
                records: dict[str, str] | None = None
                text: str | None = None
                if kind == b"x":
                    records = _parse_pax(data, where, known)
                    named = records.get("path")
                else:
                    text = _gnu_long_text(data, label, offset, where, known)
                    named = text if kind == b"L" else None
                if kind in chain or (kind == b"x" and b"L" in chain) or (kind == b"L" and b"x" in chain):
                    names = " and ".join(repr(n) for n in dict.fromkeys(n for n in (prior, named) if n))
                    raise _unsafe(
                        f"{where}: member {names or repr(known)} has more than one extended header ({label} after "
                        f"{' and '.join(_CHAIN_NAMES[k] for k in chain)}): each can name it, and readers disagree "
                        "about which one wins",
                        prior or named or known,
                    )
                chain.append(kind)
                if records is not None:
                    pax = records
                elif kind == b"L":
                    long_name = text
                continue
            raw_name = header.raw_name()
            name_text = pax["path"] if pax is not None and "path" in pax else long_name
            if name_text is None:
                try:
                    name_text = raw_name.decode("utf-8")
                except UnicodeDecodeError:
                    raise _unsafe(f"{where}: member name {raw_name!r} is not UTF-8", repr(raw_name)) from None
            subject = name_text or where
            # Bounds first: nothing else about a member is judged before its size is known to be acceptable.
            count += 1
            if count > limits.max_entries:
                raise _unsafe(f"{where} has more than {limits.max_entries} members", subject)
            if pax and "size" in pax and int(pax["size"]) != header.size:
                raise _unsafe(
                    f"{where}: member {subject!r}: its PAX size ({pax['size']}) differs from its header's "
                    f"({header.size}); readers that ignore PAX would read other data",
                    subject,
                )
            if header.size > limits.max_entry_size:
                raise _unsafe(f"member {subject!r} would expand to {header.size} bytes", subject)
            total += header.size
            if total > limits.max_total_size:
                raise _unsafe(f"{where} would expand to more than {limits.max_total_size} bytes", subject)
            if total > limits.ratio_floor and total > limits.max_ratio * compressed:
                raise _unsafe(
                    f"{where} would expand to {total} bytes from {compressed} (more than {limits.max_ratio}:1)",
                    subject,
                )
            if kind == b"g":
                raise _unsafe(
                    f"{where}: PAX global header {subject!r} (Python applies it to every later member, Go ignores it)",
                    subject,
                )
            if b"K" in chain:
                raise _unsafe(
                    f"{where}: member {subject!r} carries a GNU long link name (links are not accepted, and a "
                    "link target on a file means different things to different readers)",
                    subject,
                )
            if kind not in (b"0", b"\x00", b"5"):
                what = _TYPE_NAMES.get(kind, f"of unknown type {kind!r}")
                raise _unsafe(f"member {subject!r} is {what}", subject)
            is_dir = kind == b"5"
            if header.link_name():
                raise _unsafe(f"member {subject!r} has a link target but is not a link", subject)
            if is_dir and header.size:
                raise _unsafe(f"directory {subject!r} has {header.size} bytes of data", subject)
            name = name_text
            while name.startswith("./"):
                name = name[2:]
            if not is_dir and name.endswith("/"):
                raise _unsafe(
                    f"regular file {subject!r} has a name ending in '/' (some readers make it a directory)", subject
                )
            is_root = name in ("", ".")
            _check_mode(header.mode, is_dir, "." if is_root else name.rstrip("/") or name)
            if is_root:
                if not is_dir:
                    raise _unsafe(f"{where}: a file member named {subject!r}", subject)
                body = _Body(stream, 0, ".")
                yield _Item(None, body)
            else:
                name = name.rstrip("/") or name  # "/" stays "/": check_entry_name refuses it as absolute
                check_entry_name(name + "/" if is_dir and name != "/" else name, raw=name.encode("utf-8"))
                member = TarMember(name, is_dir, header.size, bool(header.mode & stat.S_IXUSR), header.mode & 0o7777)
                body = _Body(stream, header.size, name)
                yield _Item(member, body)
            body.skip()
            _check_padding(stream, header.size, subject, where)
            pax = None
            long_name = None
            chain = []


def _check_padding(stream: _Gunzip, size: int, subject: str, where: str) -> None:
    pad = -size % _BLOCK
    if pad and stream.read_exact(pad, f"padding after {subject!r}").strip(b"\x00"):
        raise _unsafe(f"{where}: non-zero bytes in the padding after {subject!r}", subject)


def _check_end(stream: _Gunzip, where: str) -> None:
    second = stream.read(_BLOCK)
    if len(second) < _BLOCK:
        raise MalformedError(
            f"{where} is not a readable .tar.gz: the end-of-archive marker is a single zero block (truncated)",
            subject=where,
        )
    if second != _ZERO_BLOCK:
        raise _unsafe(
            f"{where}: data after a lone zero block at offset {stream.produced - 2 * _BLOCK} (Python stops there, "
            "GNU tar reads on)",
            where,
        )
    trailer = 0
    while chunk := stream.read(_CHUNK):
        if chunk.strip(b"\x00"):
            raise _unsafe(
                f"{where}: data after the end-of-archive marker (offset {stream.produced - len(chunk)}): readers "
                "that skip zero blocks would extract it",
                where,
            )
        trailer += len(chunk)
        if trailer > MAX_TRAILER:
            raise _unsafe(f"{where}: more than {MAX_TRAILER} bytes of padding after the end of the archive", where)


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts like a gzip file (cheap sniff; :func:`scan_tar` decides)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def scan_tar(
    path: Path,
    *,
    limits: TarLimits = DEFAULT_TAR_LIMITS,
    capture: Callable[[str], bool] | None = None,
    capture_max: int = MAX_MANIFEST_BYTES,
    source: str | None = None,
) -> TarListing:
    """Validate every member of the gzipped tar at ``path`` without writing anything.

    ``capture`` picks files whose content the listing keeps (manifests), up to ``capture_max`` bytes each: a
    bigger one is listed but not kept. ``source`` names the bundle in messages (default: ``path``).

    Raises:
        UnsafeArchiveError: a rule of this module broken (the member, or the file for stream faults, named).
        MalformedError: not a gzipped tar, or a damaged or truncated one.
    """
    where = source or str(path)
    members: list[TarMember] = []
    manifests: dict[str, bytes] = {}
    seen: dict[str, str] = {}
    for item in _walk(path, limits, where):
        m = item.member
        if m is None:  # "." itself: the extraction root
            if "." in seen:
                raise _unsafe(f"{where}: more than one member names the extraction root '.'", ".")
            seen["."] = "."
            continue
        folded = fold_name(m.name)
        if folded in seen:
            raise _unsafe(f"duplicate member {m.name!r} (clashes with {seen[folded]!r})", m.name)
        seen[folded] = m.name
        if capture is not None and not m.is_dir and m.size <= capture_max and capture(m.name):
            manifests[m.name] = b"".join(item.body.chunks())
        members.append(m)
    files = {fold_name(m.name) for m in members if not m.is_dir}
    for m in members:
        parts = fold_name(m.name).split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise _unsafe(f"member {m.name!r} lies under a file of the same name", m.name)
    return TarListing(tuple(members), manifests)


def extract_tar(
    path: Path,
    dest: Path,
    listing: TarListing,
    *,
    root: str = "",
    on_file: Callable[[str], None] | None = None,
    source: str | None = None,
) -> dict[str, str]:
    """Write the members of ``listing`` found under ``root`` into the empty directory ``dest``.

    Every member is checked again against the listing (the file could only change if someone rewrote it between
    the passes). Files are written 0755 when their owner execute bit is set, 0644 otherwise; directories 0755.
    Returns the SHA-256 (hex) of every file written, by path relative to ``dest``.
    """
    where = source or str(path)
    expected = {m.name: m for m in listing.members}
    prefix = f"{root}/" if root else ""
    written: dict[str, str] = {}
    seen = 0
    for item in _walk(path, _relaxed(listing), where):
        if item.member is None:
            continue
        name = item.member.name
        m = expected.get(name)
        if m is None or m != item.member:
            raise _unsafe(f"{where} changed while it was being installed", name)
        seen += 1
        if name == root or not name.startswith(prefix):
            continue
        rel = name[len(prefix) :]
        parts = rel.split("/")
        if m.is_dir:
            make_dirs(dest, parts)
            continue
        parent = make_dirs(dest, parts[:-1])
        written[rel] = write_new_file(parent / parts[-1], item.body.chunks(), executable=m.executable)
        if on_file is not None:
            on_file(rel)
    if seen != len(expected):
        raise _unsafe(f"{where} changed while it was being installed", where)
    return written


def _relaxed(listing: TarListing) -> TarLimits:
    # The second pass re-reads what the first accepted; its bounds are the listing itself.
    total = sum(m.size for m in listing.members)
    biggest = max((m.size for m in listing.members), default=0)
    n = len(listing.members) + 1  # and the root entry, when there is one
    return TarLimits(max_entries=n, max_total_size=total, max_entry_size=biggest, max_ratio=1 << 62)


def make_dirs(dest: Path, parts: list[str]) -> Path:
    """``dest/parts...``, creating each missing directory 0755 (mkdir -p would use the umask's default)."""
    target = dest
    for part in parts:
        target = target / part
        try:
            os.mkdir(target, 0o755)
        except FileExistsError:
            if target.is_symlink() or not target.is_dir():
                raise _unsafe(f"{target} exists and is not a directory", part) from None
    return target


def write_new_file(target: Path, chunks: Iterable[bytes | memoryview], *, executable: bool = False) -> str:
    """Create ``target`` (never following or replacing anything) and return the SHA-256 of what was written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(target, flags, 0o755 if executable else 0o644)
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


__all__ = [
    "DEFAULT_TAR_LIMITS",
    "MAX_EXTENDED_HEADER",
    "MAX_MANIFEST_BYTES",
    "TarLimits",
    "TarListing",
    "TarMember",
    "extract_tar",
    "is_gzip",
    "make_dirs",
    "scan_tar",
    "write_new_file",
]
