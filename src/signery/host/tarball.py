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
makes a second pass with the same parser and writes exactly the members the scan listed, each checked again. The
byte-level layer (the gzip stream, one header block, PAX records, GNU long names, modes) is
:mod:`signery.host._tar_headers`; the sequence of members (bounds, types, names, the end) is here.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..archive import check_entry_name, fold_name
from ..errors import MalformedError
from ._tar_headers import (
    BLOCK,
    CHAIN_NAMES,
    CHUNK,
    GZIP_MAGIC,
    MAX_EXTENDED_HEADER,
    TYPE_NAMES,
    ZERO_BLOCK,
    Gunzip,
    Header,
    check_mode,
    gnu_long_text,
    parse_pax,
    unsafe,
)

MAX_MANIFEST_BYTES = 1 << 20  # default capture bound (signery.package.MAX_MANIFEST_BYTES, the same)
MAX_TRAILER = 1 << 20  # zero bytes after the end-of-archive marker (GNU tar pads to 10 KiB records)


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


@dataclass
class _Item:
    """A member as the walk yields it: ``body`` reads its data (what is left unread is skipped afterwards)."""

    member: TarMember | None  # None for the extraction root ("." / "./")
    body: _Body


class _Body:
    def __init__(self, stream: Gunzip, size: int, name: str) -> None:
        self._stream = stream
        self.remaining = size
        self._name = name

    def chunks(self) -> Iterator[bytes]:
        while self.remaining:
            chunk = self._stream.read_exact(min(self.remaining, CHUNK), f"in the data of {self._name!r}")
            self.remaining -= len(chunk)
            yield chunk

    def skip(self) -> None:
        for _ in self.chunks():
            pass


def _walk(path: Path, limits: TarLimits, where: str) -> Iterator[_Item]:
    """Every member of the bundle at ``path``, checked; raises at the first refusal."""
    with Path(path).open("rb") as fh:
        compressed = max(os.fstat(fh.fileno()).st_size, 1)
        stream = Gunzip(fh, where)
        count = 0
        total = 0
        pax: dict[str, str] | None = None
        long_name: str | None = None
        chain: list[bytes] = []  # the extended headers before the coming member
        while True:
            offset = stream.produced
            block = stream.read(BLOCK)
            if not block:
                raise MalformedError(
                    f"{where} is not a readable .tar.gz: the tar stream ends without its end-of-archive marker "
                    "(truncated)",
                    subject=where,
                )
            if len(block) < BLOCK:
                raise MalformedError(f"{where} is not a readable .tar.gz: truncated tar header", subject=where)
            if block == ZERO_BLOCK:
                if chain:
                    raise MalformedError(
                        f"{where}: an extended header at the end of the archive describes no member", subject=where
                    )
                _check_end(stream, where)
                return
            header = Header(block, offset, where)
            kind = header.type
            if kind in (b"x", b"L", b"K"):
                label = {b"x": "PAX header", b"L": "GNU long name", b"K": "GNU long link name"}[kind]
                prior = (pax or {}).get("path") or long_name  # a name the chain gave the member already
                known = prior or header.raw_name_text() or where
                if header.size > MAX_EXTENDED_HEADER:
                    raise unsafe(f"{where}: {label} of {header.size} bytes (at offset {offset})", known)
                data = stream.read_exact(header.size, f"{label} at offset {offset}")
                _check_padding(stream, header.size, known, where)
                records: dict[str, str] | None = None
                text: str | None = None
                if kind == b"x":
                    records = parse_pax(data, where, known)
                    named = records.get("path")
                else:
                    text = gnu_long_text(data, label, offset, where, known)
                    named = text if kind == b"L" else None
                if kind in chain or (kind == b"x" and b"L" in chain) or (kind == b"L" and b"x" in chain):
                    names = " and ".join(repr(n) for n in dict.fromkeys(n for n in (prior, named) if n))
                    raise unsafe(
                        f"{where}: member {names or repr(known)} has more than one extended header ({label} after "
                        f"{' and '.join(CHAIN_NAMES[k] for k in chain)}): each can name it, and readers disagree "
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
                    raise unsafe(f"{where}: member name {raw_name!r} is not UTF-8", repr(raw_name)) from None
            subject = name_text or where
            # Bounds first: nothing else about a member is judged before its size is known to be acceptable.
            count += 1
            if count > limits.max_entries:
                raise unsafe(f"{where} has more than {limits.max_entries} members", subject)
            if pax and "size" in pax and int(pax["size"]) != header.size:
                raise unsafe(
                    f"{where}: member {subject!r}: its PAX size ({pax['size']}) differs from its header's "
                    f"({header.size}); readers that ignore PAX would read other data",
                    subject,
                )
            if header.size > limits.max_entry_size:
                raise unsafe(f"member {subject!r} would expand to {header.size} bytes", subject)
            total += header.size
            if total > limits.max_total_size:
                raise unsafe(f"{where} would expand to more than {limits.max_total_size} bytes", subject)
            if total > limits.ratio_floor and total > limits.max_ratio * compressed:
                raise unsafe(
                    f"{where} would expand to {total} bytes from {compressed} (more than {limits.max_ratio}:1)",
                    subject,
                )
            if kind == b"g":
                raise unsafe(
                    f"{where}: PAX global header {subject!r} (Python applies it to every later member, Go ignores it)",
                    subject,
                )
            if b"K" in chain:
                raise unsafe(
                    f"{where}: member {subject!r} carries a GNU long link name (links are not accepted, and a "
                    "link target on a file means different things to different readers)",
                    subject,
                )
            if kind not in (b"0", b"\x00", b"5"):
                what = TYPE_NAMES.get(kind, f"of unknown type {kind!r}")
                raise unsafe(f"member {subject!r} is {what}", subject)
            is_dir = kind == b"5"
            if header.link_name():
                raise unsafe(f"member {subject!r} has a link target but is not a link", subject)
            if is_dir and header.size:
                raise unsafe(f"directory {subject!r} has {header.size} bytes of data", subject)
            name = name_text
            while name.startswith("./"):
                name = name[2:]
            if not is_dir and name.endswith("/"):
                raise unsafe(
                    f"regular file {subject!r} has a name ending in '/' (some readers make it a directory)", subject
                )
            is_root = name in ("", ".")
            check_mode(header.mode, is_dir, "." if is_root else name.rstrip("/") or name)
            if is_root:
                if not is_dir:
                    raise unsafe(f"{where}: a file member named {subject!r}", subject)
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


def _check_padding(stream: Gunzip, size: int, subject: str, where: str) -> None:
    pad = -size % BLOCK
    if pad and stream.read_exact(pad, f"padding after {subject!r}").strip(b"\x00"):
        raise unsafe(f"{where}: non-zero bytes in the padding after {subject!r}", subject)


def _check_end(stream: Gunzip, where: str) -> None:
    second = stream.read(BLOCK)
    if len(second) < BLOCK:
        raise MalformedError(
            f"{where} is not a readable .tar.gz: the end-of-archive marker is a single zero block (truncated)",
            subject=where,
        )
    if second != ZERO_BLOCK:
        raise unsafe(
            f"{where}: data after a lone zero block at offset {stream.produced - 2 * BLOCK} (Python stops there, "
            "GNU tar reads on)",
            where,
        )
    trailer = 0
    while chunk := stream.read(CHUNK):
        if chunk.strip(b"\x00"):
            raise unsafe(
                f"{where}: data after the end-of-archive marker (offset {stream.produced - len(chunk)}): readers "
                "that skip zero blocks would extract it",
                where,
            )
        trailer += len(chunk)
        if trailer > MAX_TRAILER:
            raise unsafe(f"{where}: more than {MAX_TRAILER} bytes of padding after the end of the archive", where)


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts like a gzip file (cheap sniff; :func:`scan_tar` decides)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(2) == GZIP_MAGIC
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
                raise unsafe(f"{where}: more than one member names the extraction root '.'", ".")
            seen["."] = "."
            continue
        folded = fold_name(m.name)
        if folded in seen:
            raise unsafe(f"duplicate member {m.name!r} (clashes with {seen[folded]!r})", m.name)
        seen[folded] = m.name
        if capture is not None and not m.is_dir and m.size <= capture_max and capture(m.name):
            manifests[m.name] = b"".join(item.body.chunks())
        members.append(m)
    files = {fold_name(m.name) for m in members if not m.is_dir}
    for m in members:
        parts = fold_name(m.name).split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise unsafe(f"member {m.name!r} lies under a file of the same name", m.name)
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
    written: dict[str, str] = {}
    seen = 0
    for item in _walk(path, _relaxed(listing), where):
        if item.member is None:
            continue
        name = item.member.name
        m = expected.get(name)
        if m is None or m != item.member:
            raise unsafe(f"{where} changed while it was being installed", name)
        seen += 1
        placed = write_entry(dest, name, item.body.chunks(), root=root, is_dir=m.is_dir, executable=m.executable)
        if placed is not None:
            rel, digest = placed
            written[rel] = digest
            if on_file is not None:
                on_file(rel)
    if seen != len(expected):
        raise unsafe(f"{where} changed while it was being installed", where)
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
                raise unsafe(f"{target} exists and is not a directory", part) from None
    return target


def write_entry(
    dest: Path, name: str, chunks: Iterable[bytes | memoryview], *, root: str, is_dir: bool, executable: bool
) -> tuple[str, str] | None:
    """Create the archive entry ``name`` (``/``-separated) in ``dest`` when it lies under ``root``, as a directory
    0755 or a new file (0755 when ``executable``, else 0644) holding ``chunks``.

    Returns the file's path relative to ``dest`` and its SHA-256 (hex); ``None`` for a directory, ``root`` itself and
    anything outside it (the manifest reader made sure nothing else lies outside). ``chunks`` is read only for a
    file.
    """
    prefix = f"{root}/" if root else ""
    if name == root or not name.startswith(prefix):
        return None
    rel = name[len(prefix) :]
    parts = rel.split("/")
    if is_dir:
        make_dirs(dest, parts)
        return None
    parent = make_dirs(dest, parts[:-1])
    return rel, write_new_file(parent / parts[-1], chunks, executable=executable)


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
    "write_entry",
    "write_new_file",
]
