"""Hand-built tar streams, block by block, for the tar reader's tests (import as ``from tarcraft import ...``).

:mod:`tarfile` cannot write most of what the tests need (a PAX path *and* a GNU long name on one member, a header
with a base-256 size, a lone zero block, garbage after the end marker), so this writes the 512-byte blocks itself:
:func:`header` for one header block (checksum computed unless given), :func:`pax` / :func:`long_name` for
extended headers with their data, :func:`member` for a header plus its data, :data:`END` for the end-of-archive
marker, and :func:`gz` to compress a stream into one gzip member (:func:`write` writes it to a file).
"""

from __future__ import annotations

import gzip
from pathlib import Path

BLOCK = 512
END = bytes(2 * BLOCK)
USTAR = b"ustar\x0000"
GNU = b"ustar  \x00"


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\x00"


def header(
    name: str | bytes,
    *,
    type_: bytes = b"0",
    size: int = 0,
    mode: int = 0o644,
    magic: bytes = USTAR,
    prefix: bytes = b"",
    linkname: bytes = b"",
    fields: dict[str, bytes] | None = None,
    tail: bytes = b"",
    checksum: int | None = None,
) -> bytes:
    """One header block. ``fields`` replaces raw numeric fields (``size``, ``mode``...); ``tail`` fills the 12 bytes
    after ``prefix`` (ustar) or, for GNU headers, is written at offset 345 (where ustar keeps ``prefix``)."""
    raw_name = name.encode() if isinstance(name, str) else name
    numeric = {
        "mode": _octal(mode, 8),
        "uid": _octal(1000, 8),
        "gid": _octal(1000, 8),
        "size": _octal(size, 12),
        "mtime": _octal(1_700_000_000, 12),
        "devmajor": _octal(0, 8),
        "devminor": _octal(0, 8),
    }
    numeric.update(fields or {})
    block = bytearray(BLOCK)
    block[0:100] = raw_name[:100].ljust(100, b"\x00")
    for key, start, end in (
        ("mode", 100, 108),
        ("uid", 108, 116),
        ("gid", 116, 124),
        ("size", 124, 136),
        ("mtime", 136, 148),
        ("devmajor", 329, 337),
        ("devminor", 337, 345),
    ):
        block[start:end] = numeric[key][: end - start].ljust(end - start, b"\x00")
    block[156:157] = type_
    block[157:257] = linkname.ljust(100, b"\x00")
    block[257:265] = magic
    block[265:297] = b"user".ljust(32, b"\x00")
    block[297:329] = b"group".ljust(32, b"\x00")
    if magic == GNU:
        block[345 : 345 + len(tail)] = tail
    else:
        block[345:500] = prefix.ljust(155, b"\x00")
        block[500 : 500 + len(tail)] = tail
    block[148:156] = b" " * 8
    value = sum(block) if checksum is None else checksum
    block[148:156] = f"{value:06o}".encode() + b"\x00 "
    return bytes(block)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(name: str | bytes, data: bytes = b"", **kw: object) -> bytes:
    """A header and its data (size from ``data`` unless ``size`` is given)."""
    kw.setdefault("size", len(data))
    return header(name, **kw) + pad(data)  # type: ignore[arg-type]


def directory(name: str, mode: int = 0o755, **kw: object) -> bytes:
    return header(name, type_=b"5", mode=mode, **kw)  # type: ignore[arg-type]


def pax_records(records: list[tuple[str, str]] | dict[str, str]) -> bytes:
    items = records.items() if isinstance(records, dict) else records
    out = b""
    for key, value in items:
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length).encode()) + len(body) != length:
            length += 1
        out += str(length).encode() + body
    return out


def pax(records: list[tuple[str, str]] | dict[str, str] | bytes, *, type_: bytes = b"x") -> bytes:
    """A PAX extended (``x``) or global (``g``) header with its records."""
    data = records if isinstance(records, bytes) else pax_records(records)
    name = "pax_global_header" if type_ == b"g" else "./PaxHeaders/x"
    return header(name, type_=type_, size=len(data)) + pad(data)


def long_name(name: str, *, type_: bytes = b"L") -> bytes:
    """A GNU long name (``L``) or long link name (``K``) record."""
    data = name.encode() + b"\x00"
    return header("././@LongLink", type_=type_, size=len(data), magic=GNU) + pad(data)


def gz(stream: bytes) -> bytes:
    return gzip.compress(stream, mtime=0)


def write(path: Path, stream: bytes, *, compress: bool = True) -> Path:
    path.write_bytes(gz(stream) if compress else stream)
    return path


def bundle(*members: bytes, plugin_id: str = "com.example.demo", version: str = "0.1.0") -> bytes:
    """A small valid Mattermost bundle's tar stream (directory, plugin.json, an executable), then ``members``,
    then the end marker."""
    manifest = f'{{"id": "{plugin_id}", "version": "{version}"}}'.encode()
    return (
        directory(f"{plugin_id}/")
        + member(f"{plugin_id}/plugin.json", manifest)
        + member(f"{plugin_id}/server/plugin-linux-amd64", b"\x7fELF", mode=0o755)
        + b"".join(members)
        + END
    )
