"""A strict reader for gzipped tar plugin bundles (Mattermost's ``.tar.gz``): regular files and directories only.

Like :mod:`signery.archive` for ZIP, it refuses anything ambiguous or dangerous before a byte is written, naming
the member: links (symbolic and hard), devices, FIFOs, sparse files, absolute paths, ``..``, backslashes,
control characters, duplicate names (after case folding and Unicode normalisation), a file that is also a
directory, and bundles beyond the limits. :func:`scan_tar` validates the whole bundle in one streaming pass;
:func:`extract_tar` makes a second pass and writes exactly the members the scan listed, each checked again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..archive import check_entry_name
from ..errors import MalformedError, UnsafeArchiveError

_CHUNK = 1 << 20  # copy in 1 MiB steps: bounded memory for any member size
MAX_MANIFEST_BYTES = 1 << 20  # plugin.json is a few KiB; a bigger one is an attack on the JSON parser


@dataclass(frozen=True)
class TarLimits:
    """Bounds on a bundle: member count (inode exhaustion), total and per-member uncompressed bytes (bombs)."""

    max_entries: int = 20_000
    max_total_size: int = 2 << 30
    max_entry_size: int = 1 << 30


@dataclass(frozen=True)
class TarMember:
    name: str  # normalised: no leading "./", no trailing "/"
    is_dir: bool
    size: int
    executable: bool


@dataclass(frozen=True)
class TarListing:
    members: tuple[TarMember, ...]
    manifests: dict[str, bytes]  # name -> content of every member called plugin.json (small, bounded)


def _normalise(raw: str) -> str | None:
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if name not in ("", ".") else ""
    return name or None


def _open(path: Path) -> tarfile.TarFile:
    # Streaming mode ("r|gz") reads forward only, so a hostile index or seek pattern cannot cost more than one pass.
    return tarfile.open(path, mode="r|gz")


def _check(member: tarfile.TarInfo, where: str) -> None:
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{where}: member {member.name!r} is a link", subject=member.name)
    if member.issparse():
        raise UnsafeArchiveError(f"{where}: member {member.name!r} is a sparse file", subject=member.name)
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(f"{where}: member {member.name!r} is a special file", subject=member.name)


def scan_tar(path: Path, *, limits: TarLimits = TarLimits()) -> TarListing:
    """Validate every member of the gzipped tar at ``path`` without writing anything.

    Raises:
        UnsafeArchiveError: a link, special file, unsafe or duplicate name, or a limit exceeded (member named).
        MalformedError: not a gzipped tar, or a damaged one.
    """
    where = str(path)
    members: list[TarMember] = []
    manifests: dict[str, bytes] = {}
    seen: dict[str, str] = {}
    total = 0
    try:
        with _open(path) as tf:
            for info in tf:
                if len(members) >= limits.max_entries:
                    raise UnsafeArchiveError(f"{where} has more than {limits.max_entries} members", subject=where)
                _check(info, where)
                name = _normalise(info.name)
                if name is None:
                    if info.isdir():
                        continue  # "." itself: the extraction root
                    raise UnsafeArchiveError(f"{where}: member with an empty name", subject=repr(info.name))
                check_entry_name(name)
                folded = unicodedata.normalize("NFC", name).casefold()
                if folded in seen:
                    raise UnsafeArchiveError(f"duplicate member {name!r} (clashes with {seen[folded]!r})", subject=name)
                seen[folded] = name
                if info.size > limits.max_entry_size:
                    raise UnsafeArchiveError(f"member {name!r} would expand to {info.size} bytes", subject=name)
                total += info.size
                if total > limits.max_total_size:
                    raise UnsafeArchiveError(
                        f"{where} would expand to more than {limits.max_total_size} bytes", subject=name
                    )
                if info.isreg() and name.rsplit("/", 1)[-1] == "plugin.json":
                    fh = tf.extractfile(info)
                    if fh is not None and info.size <= MAX_MANIFEST_BYTES:
                        manifests[name] = fh.read(MAX_MANIFEST_BYTES + 1)
                members.append(TarMember(name, info.isdir(), info.size if info.isreg() else 0, bool(info.mode & 0o111)))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MalformedError(f"{where} is not a readable .tar.gz: {exc}", subject=where) from None
    files = {unicodedata.normalize("NFC", m.name).casefold() for m in members if not m.is_dir}
    for m in members:
        parts = unicodedata.normalize("NFC", m.name).casefold().split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafeArchiveError(f"member {m.name!r} lies under a file of the same name", subject=m.name)
    return TarListing(tuple(members), manifests)


def extract_tar(
    path: Path,
    dest: Path,
    listing: TarListing,
    *,
    root: str = "",
    on_file: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Write the members of ``listing`` found under ``root`` into the empty directory ``dest``.

    Every member is checked again against the listing (the file could only change if someone rewrote it between
    the passes). Returns the SHA-256 (hex) of every file written, by path relative to ``dest``.
    """
    expected = {m.name: m for m in listing.members}
    prefix = f"{root}/" if root else ""
    written: dict[str, str] = {}
    where = str(path)
    try:
        with _open(path) as tf:
            for info in tf:
                _check(info, where)
                name = _normalise(info.name)
                if name is None:
                    continue
                m = expected.get(name)
                if m is None or m.is_dir != info.isdir() or (not m.is_dir and m.size != info.size):
                    raise UnsafeArchiveError(f"{where} changed while it was being installed", subject=name)
                if name == root or not name.startswith(prefix):
                    continue
                rel = name[len(prefix) :]
                target = dest.joinpath(*rel.split("/"))
                if m.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(info)
                if src is None:
                    raise UnsafeArchiveError(f"member {name!r} has no data", subject=name)
                written[rel] = write_new_file(target, _chunks(src), executable=m.executable)
                if on_file is not None:
                    on_file(rel)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MalformedError(f"{where} is not a readable .tar.gz: {exc}", subject=where) from None
    return written


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(_CHUNK):
        yield chunk


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


__all__ = ["TarLimits", "TarListing", "TarMember", "extract_tar", "scan_tar", "write_new_file"]
