"""ASCII armor (RFC 4880 section 6): base64 blocks with a CRC-24 line, read and written as gpg does."""

from __future__ import annotations

import base64
import re

from ..errors import MalformedError
from ._packets import ArmorKind


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


_ARMOR_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,0-9/]+)-----[ \t]*$")


def is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN PGP ")


def dearmor(data: bytes, *, source: str) -> tuple[bytes, list[str]]:
    """Decode every armor block in ``data``; return the concatenated binary and the block kinds.

    The CRC-24 line, when present, must match: a damaged copy is refused rather than half-parsed.
    """
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    out = bytearray()
    kinds: list[str] = []
    i = 0
    while i < len(lines):
        m = _ARMOR_BEGIN.match(lines[i].strip())
        if not m:
            i += 1
            continue
        kind = m.group(1).decode()
        i += 1
        # Armor headers ("Version: ...", "Comment: ...") are not authenticated; they end at the first blank line.
        j = i
        while j < len(lines) and lines[j].strip() and b":" in lines[j] and not lines[j].startswith(b"="):
            j += 1
        if j < len(lines) and not lines[j].strip():
            i = j + 1
        body: list[bytes] = []
        crc: bytes | None = None
        while i < len(lines) and not lines[i].startswith(b"-----END PGP "):
            line = lines[i].strip()
            if line.startswith(b"=") and len(line) == 5:
                crc = line[1:]
            elif line:
                body.append(line)
            i += 1
        if i >= len(lines):
            raise MalformedError(f"{source}: armor block {kind} has no END line", subject=source)
        try:
            raw = base64.b64decode(b"".join(body), validate=True)
        except ValueError:
            raise MalformedError(f"{source}: armor block {kind} is not valid base64", subject=source) from None
        if crc is not None:
            try:
                want = int.from_bytes(base64.b64decode(crc, validate=True), "big")
            except ValueError:
                raise MalformedError(f"{source}: armor checksum is not base64", subject=source) from None
            if want != _crc24(raw):
                raise MalformedError(f"{source}: armor checksum mismatch (damaged copy?)", subject=source)
        out += raw
        kinds.append(kind)
        i += 1
    if not kinds:
        raise MalformedError(f"{source}: no OpenPGP armor block found", subject=source)
    return bytes(out), kinds


def armor(data: bytes, kind: ArmorKind) -> str:
    """ASCII-armor ``data`` as gpg does: 64-column base64, CRC-24 line, no unauthenticated headers."""
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    return "\n".join([f"-----BEGIN PGP {kind}-----", "", *lines, f"={crc}", f"-----END PGP {kind}-----", ""])


def binary(data: bytes, *, source: str) -> bytes:
    """``data`` as binary OpenPGP: dearmored if armored, else as given."""
    return dearmor(data, source=source)[0] if is_armored(data) else data
