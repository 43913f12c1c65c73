"""PE/COFF images for Authenticode: bounded parsing, the Authenticode image hash, the certificate table, the checksum.

Everything here reads a hostile file. :func:`parse` checks every offset and size against the file before anything
is hashed, and refuses with :class:`~signery.errors.MalformedError` (not a PE image, truncated, fields out of range)
or :class:`~signery.errors.UnsafeArchiveError` (a layout that would leave signed-looking bytes outside the hash:
data after the certificate table, a certificate table inside a section, overlapping sections), naming the offset.

The image hash follows Microsoft's "Windows Authenticode Portable Executable Signature Format" (§ "Calculating the
PE Image Hash"), as sbsign and osslsigncode compute it: the headers up to ``SizeOfHeaders`` without the checksum
field and the certificate-table data-directory entry, then each section's raw data in file order, then the bytes
from the sum of those sizes up to the certificate table (or the end of the file). An image signed for the first
time is first padded with zeros to a multiple of 8 bytes, as sbsign does, so the padding is hashed and the
certificate table that follows is 8-byte aligned.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MalformedError, UnsafeArchiveError

MAX_SECTIONS = 96  # the PE/COFF specification's limit for images
MAX_CERTIFICATES = 16  # WIN_CERTIFICATE entries in one table
MAX_CERTIFICATE_BYTES = 1 << 20  # one signature is a few KiB; a chain with timestamps tens of KiB
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
PE32, PE32_PLUS = 0x10B, 0x20B
SECURITY_DIRECTORY = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY
_CHUNK = 1 << 20  # even: each chunk's value mod 0xFFFF is its sum of 16-bit words (2**16 == 1 mod 0xFFFF)


@dataclass(frozen=True)
class Section:
    name: str
    offset: int  # PointerToRawData
    size: int  # SizeOfRawData


@dataclass(frozen=True)
class PEImage:
    """Where the parts Authenticode cares about sit in one image."""

    size: int
    magic: int
    machine: int
    checksum_offset: int
    checksum: int
    security_entry: int  # file offset of the certificate-table data-directory entry (8 bytes)
    size_of_headers: int
    sections: tuple[Section, ...]  # with raw data, in file order
    cert_offset: int  # 0 when unsigned
    cert_size: int

    @property
    def signed(self) -> bool:
        return self.cert_size > 0

    @property
    def hashed_end(self) -> int:
        """Where the hashed bytes end: the certificate table, or the end of the file."""
        return self.cert_offset if self.signed else self.size

    @property
    def sum_of_bytes_hashed(self) -> int:
        return self.size_of_headers + sum(s.size for s in self.sections)


@dataclass(frozen=True)
class WinCertificate:
    offset: int
    revision: int
    type: int
    content: bytes


def _u16(data: bytes | bytearray, off: int) -> int:
    return int(struct.unpack_from("<H", data, off)[0])


def _u32(data: bytes | bytearray, off: int) -> int:
    return int(struct.unpack_from("<I", data, off)[0])


def looks_signed(path: Path) -> bool:
    """Cheap: ``MZ``, a PE header, and a non-empty certificate-table entry (a few hundred bytes read)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(0x40)
            if len(head) < 0x40 or head[:2] != b"MZ":
                return False
            lfanew = _u32(head, 0x3C)
            fh.seek(lfanew)
            hdr = fh.read(24 + 240)  # the COFF header and an optional header up to the data directories
    except OSError:
        return False
    if len(hdr) < 24 + 2 or hdr[:4] != b"PE\0\0":
        return False
    magic = _u16(hdr, 24)
    dd = 24 + (96 if magic == PE32 else 112 if magic == PE32_PLUS else 0)
    if dd == 24 or len(hdr) < dd + 8 * SECURITY_DIRECTORY + 8 or _u32(hdr, dd - 4) <= SECURITY_DIRECTORY:
        return False
    return _u32(hdr, dd + 8 * SECURITY_DIRECTORY + 4) > 0


def parse(data: bytes | bytearray, *, source: str) -> PEImage:
    """The layout of the PE image ``data``; refuses what cannot be hashed unambiguously."""
    size = len(data)

    def bad(msg: str, off: int) -> MalformedError:
        return MalformedError(f"{source}: {msg} (offset {off})", subject=source)

    if size < 0x40 or data[:2] != b"MZ":
        raise bad("not a PE image: no MZ header", 0)
    lfanew = _u32(data, 0x3C)
    if lfanew + 24 > size:
        raise bad(f"PE header offset {lfanew} is past the end of the file", 0x3C)
    if data[lfanew : lfanew + 4] != b"PE\0\0":
        raise bad("not a PE image: no PE signature", lfanew)
    machine = _u16(data, lfanew + 4)
    nsec = _u16(data, lfanew + 6)
    opt_size = _u16(data, lfanew + 20)
    opt = lfanew + 24
    if opt + opt_size > size or opt_size < 2:
        raise bad("truncated optional header", opt)
    magic = _u16(data, opt)
    if magic not in (PE32, PE32_PLUS):
        raise bad(f"unknown optional header magic 0x{magic:04x}", opt)
    dd = opt + (96 if magic == PE32 else 112)
    if dd > opt + opt_size:
        raise bad("optional header too short for its data directories", opt)
    n_dirs = _u32(data, dd - 4)
    security_entry = dd + 8 * SECURITY_DIRECTORY
    if n_dirs <= SECURITY_DIRECTORY or security_entry + 8 > opt + opt_size:
        raise bad("the image has no certificate-table data-directory entry", dd - 4)
    size_of_headers = _u32(data, opt + 60)
    checksum_offset = opt + 64
    table = opt + opt_size
    if nsec > MAX_SECTIONS:
        raise bad(f"{nsec} sections (at most {MAX_SECTIONS})", lfanew + 6)
    if table + 40 * nsec > size:
        raise bad("truncated section table", table)
    if not table + 40 * nsec <= size_of_headers <= size:
        raise bad(f"SizeOfHeaders {size_of_headers} does not cover the section table or exceeds the file", opt + 60)
    cert_offset, cert_size = _u32(data, security_entry), _u32(data, security_entry + 4)
    if cert_size == 0:
        cert_offset = 0
    elif cert_offset + cert_size != size:
        where = cert_offset + cert_size
        raise UnsafeArchiveError(
            f"{source}: the certificate table ({cert_size} bytes at {cert_offset}) does not end the file "
            f"(offset {where} of {size}): bytes outside it would be neither hashed nor signed",
            subject=source,
        )
    elif cert_offset % 8 or cert_offset < size_of_headers:
        raise bad(f"misplaced certificate table at {cert_offset}", security_entry)
    end = cert_offset if cert_size else size
    sections: list[Section] = []
    for i in range(nsec):
        at = table + 40 * i
        raw_size, raw_ptr = _u32(data, at + 16), _u32(data, at + 20)
        name = bytes(data[at : at + 8]).rstrip(b"\0").decode("ascii", "replace")
        if raw_size == 0:
            continue
        if raw_ptr < size_of_headers or raw_ptr + raw_size > end:
            what = "the certificate table" if cert_size and raw_ptr + raw_size > end else "the image"
            err = UnsafeArchiveError if what != "the image" else MalformedError
            raise err(
                f"{source}: section {name!r} ({raw_size} bytes at {raw_ptr}) lies outside the hashed part of "
                f"{what} (offset {at + 16})",
                subject=source,
            )
        sections.append(Section(name, raw_ptr, raw_size))
    sections.sort(key=lambda s: s.offset)
    for a, b in itertools.pairwise(sections):
        if a.offset + a.size > b.offset:
            raise UnsafeArchiveError(
                f"{source}: sections {a.name!r} and {b.name!r} overlap (offset {b.offset})", subject=source
            )
    img = PEImage(
        size=size,
        magic=magic,
        machine=machine,
        checksum_offset=checksum_offset,
        checksum=_u32(data, checksum_offset),
        security_entry=security_entry,
        size_of_headers=size_of_headers,
        sections=tuple(sections),
        cert_offset=cert_offset,
        cert_size=cert_size,
    )
    if img.sum_of_bytes_hashed > end:
        raise bad(f"headers and sections ({img.sum_of_bytes_hashed} bytes) exceed the hashed image ({end})", table)
    return img


def image_hash(
    data: bytes | bytearray, img: PEImage, hash_name: str, progress: Callable[[int], None] | None = None
) -> bytes:
    """The Authenticode digest of ``data`` laid out as ``img``."""
    h = hashlib.new(hash_name)
    view = memoryview(data)

    def feed(start: int, stop: int) -> None:
        for at in range(start, stop, _CHUNK):
            part = view[at : min(stop, at + _CHUNK)]
            h.update(part)
            if progress:
                progress(len(part))

    feed(0, img.checksum_offset)
    feed(img.checksum_offset + 4, img.security_entry)
    feed(img.security_entry + 8, img.size_of_headers)
    for s in img.sections:
        feed(s.offset, s.offset + s.size)
    if img.hashed_end > img.sum_of_bytes_hashed:
        feed(img.sum_of_bytes_hashed, img.hashed_end)
    return h.digest()


def certificates(data: bytes | bytearray, img: PEImage, *, source: str) -> list[WinCertificate]:
    """The WIN_CERTIFICATE entries of the certificate table, in order."""
    out: list[WinCertificate] = []
    at, end = img.cert_offset, img.cert_offset + img.cert_size
    while img.signed and at < end:
        if len(out) >= MAX_CERTIFICATES:
            raise MalformedError(f"{source}: more than {MAX_CERTIFICATES} certificate entries (offset {at})")
        if at + 8 > end:
            raise MalformedError(f"{source}: truncated WIN_CERTIFICATE header (offset {at})", subject=source)
        length, revision, ctype = _u32(data, at), _u16(data, at + 4), _u16(data, at + 6)
        if length < 8 or at + length > end or length > MAX_CERTIFICATE_BYTES:
            raise MalformedError(f"{source}: WIN_CERTIFICATE length {length} out of range (offset {at})")
        out.append(WinCertificate(at, revision, ctype, bytes(data[at + 8 : at + length])))
        at += (length + 7) & ~7  # entries are 8-byte aligned; a last one may leave its padding out
    return out


def pe_checksum(data: bytes | bytearray, checksum_offset: int) -> int:
    """The PE optional-header checksum of ``data`` (the checksum field counted as zero)."""
    total, nonzero = 0, False
    n = len(data)
    view = memoryview(data)
    for at in range(0, n, _CHUNK):
        chunk: bytes | bytearray | memoryview = view[at : at + _CHUNK]
        if at <= checksum_offset + 3 and checksum_offset < at + _CHUNK:
            patched = bytearray(chunk)
            for i in range(max(checksum_offset - at, 0), min(checksum_offset + 4 - at, len(patched))):
                patched[i] = 0
            chunk = patched
        value = int.from_bytes(chunk, "little")  # an odd tail is the low byte of a last word
        nonzero = nonzero or value != 0
        total += value % 0xFFFF
    folded = total % 0xFFFF
    if folded == 0 and nonzero:
        folded = 0xFFFF  # the end-around-carry sum never returns to 0 once a word is non-zero
    return (folded + n) & 0xFFFFFFFF


def prepare_for_signing(data: bytearray, img: PEImage, *, source: str) -> PEImage:
    """Pad an unsigned image with zeros to a multiple of 8 bytes (in place), as sbsign does; the new layout."""
    if img.signed or len(data) % 8 == 0:
        return img
    data.extend(b"\0" * (-len(data) % 8))
    return parse(data, source=source)


def add_certificate(data: bytearray, img: PEImage, content: bytes) -> None:
    """Append a WIN_CERTIFICATE (revision 2.0, PKCS#7 SignedData) to ``data`` in place, point the certificate-table
    entry at the table and recompute the checksum. ``img`` is ``data``'s layout, 8-byte aligned at its end."""
    if len(data) % 8:
        raise MalformedError("the image must be 8-byte aligned before a certificate is added")
    length = 8 + len(content)
    entry = struct.pack("<IHH", length, WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA) + content
    start = img.cert_offset if img.signed else len(data)
    data.extend(entry + b"\0" * (-length % 8))
    struct.pack_into("<II", data, img.security_entry, start, len(data) - start)
    struct.pack_into("<I", data, img.checksum_offset, pe_checksum(data, img.checksum_offset))


__all__ = [
    "PEImage",
    "Section",
    "WinCertificate",
    "add_certificate",
    "certificates",
    "image_hash",
    "looks_signed",
    "parse",
    "pe_checksum",
    "prepare_for_signing",
]
