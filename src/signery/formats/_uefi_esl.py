"""UEFI ``EFI_TIME`` and signature lists (``.esl``): building them (``cert-to-efi-sig-list``,
``hash-to-efi-sig-list``) and parsing them strictly.

An ``EFI_SIGNATURE_LIST`` is ``SignatureType`` (GUID) || ``ListSize`` u32 || ``HeaderSize`` u32 (0) ||
``SignatureSize`` u32, then entries ``{SignatureOwner GUID, data}``; an ESL file is one or more lists. X.509
certificates get one list each (``EFI_CERT_X509_GUID``, the DER as data), SHA-256 hashes share one list
(``EFI_CERT_SHA256_GUID``, 48-byte entries). GUIDs are stored in their mixed-endian EFI layout
(:attr:`uuid.UUID.bytes_le`). The public names are re-exported by :mod:`signery.formats.uefi`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from ..errors import MalformedError, UsageError

EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA256_GUID = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
ESL_HEADER = struct.Struct("<16sIII")  # SignatureType, ListSize, HeaderSize, SignatureSize
EFI_TIME_SIZE = 16
SHA256_ENTRY = 16 + 32
MAX_ESL_BYTES = 4 << 20  # a whole NVRAM store is a few hundred KiB; Microsoft's dbx is tens of KiB
MAX_LISTS = 4096
MAX_ENTRIES = 1 << 16
ZERO_GUID = uuid.UUID(int=0)


# -- EFI_TIME ------------------------------------------------------------------------------------------------------

_EFI_TIME = struct.Struct("<HBBBBBBIhBB")


@dataclass(frozen=True)
class EfiTime:
    """An ``EFI_TIME``; time-based authenticated variables use whole seconds in UTC with the other fields zero."""

    year: int = 0
    month: int = 0
    day: int = 0
    hour: int = 0
    minute: int = 0
    second: int = 0
    nanosecond: int = 0
    timezone: int = 0
    daylight: int = 0

    @classmethod
    def from_datetime(cls, when: datetime) -> EfiTime:
        if when.tzinfo is None:
            raise UsageError("give the UEFI timestamp with a time zone (it is stored in UTC)")
        t = when.astimezone(UTC)
        return cls(t.year, t.month, t.day, t.hour, t.minute, t.second)

    @classmethod
    def parse(cls, data: bytes) -> EfiTime:
        year, month, day, hour, minute, second, _p1, ns, tz, daylight, _p2 = _EFI_TIME.unpack(data)
        return cls(year, month, day, hour, minute, second, ns, tz, daylight)

    def to_bytes(self) -> bytes:
        try:
            return _EFI_TIME.pack(
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                0,
                self.nanosecond,
                self.timezone,
                self.daylight,
                0,
            )
        except struct.error as exc:
            raise UsageError(f"not an EFI_TIME: {exc}") from None

    @property
    def is_zero(self) -> bool:
        return self == EfiTime()

    def to_datetime(self) -> datetime | None:
        """The time as a UTC datetime; ``None`` for the zero time or a time that is not a date."""
        try:
            return datetime(self.year, self.month, self.day, self.hour, self.minute, self.second, tzinfo=UTC)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d} {self.hour:02d}:{self.minute:02d}:{self.second:02d}"


ZERO_TIME = EfiTime()


# -- signature lists -----------------------------------------------------------------------------------------------


def _guid(value: uuid.UUID | str | None, what: str = "owner GUID") -> uuid.UUID:
    if value is None:
        return ZERO_GUID
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a GUID (like 11111111-2222-3333-4444-555555555555)") from None


def _certificate_der(cert: bytes | str | x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return load_certificate(cert).public_bytes(Encoding.DER)


def load_certificate(cert: bytes | str | x509.Certificate, *, source: str = "certificate") -> x509.Certificate:
    """An X.509 certificate from PEM or DER bytes (or PEM text)."""
    if isinstance(cert, x509.Certificate):
        return cert
    data = cert.encode() if isinstance(cert, str) else bytes(cert)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data.strip() + b"\n")
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise MalformedError(f"{source} is not an X.509 certificate (PEM or DER)", subject=source) from None


def signature_list(signature_type: uuid.UUID, entries: Sequence[tuple[uuid.UUID, bytes]]) -> bytes:
    """One ``EFI_SIGNATURE_LIST`` of same-sized entries ``(owner, data)``."""
    if not entries:
        raise UsageError("an EFI signature list holds at least one entry")
    size = 16 + len(entries[0][1])
    if any(16 + len(d) != size for _, d in entries):
        raise UsageError("the entries of one EFI signature list must all have the same size")
    total = ESL_HEADER.size + size * len(entries)
    if total > MAX_ESL_BYTES:
        raise UsageError(f"an EFI signature list of {total} bytes is larger than any firmware stores")
    body = b"".join(owner.bytes_le + data for owner, data in entries)
    return ESL_HEADER.pack(signature_type.bytes_le, total, 0, size) + body


def esl_from_certificates(certs: Iterable[bytes | str | x509.Certificate], owner: uuid.UUID | str | None) -> bytes:
    """An ESL with one ``EFI_CERT_X509_GUID`` list per certificate (PEM or DER), as ``cert-to-efi-sig-list``."""
    o = _guid(owner)
    out = b"".join(signature_list(EFI_CERT_X509_GUID, [(o, _certificate_der(c))]) for c in certs)
    if not out:
        raise UsageError("no certificates given")
    return out


def esl_from_hashes(hashes: Iterable[bytes | str], owner: uuid.UUID | str | None) -> bytes:
    """An ESL with one ``EFI_CERT_SHA256_GUID`` list of SHA-256 hashes (32 bytes or 64 hex digits each)."""
    o = _guid(owner)
    entries: list[tuple[uuid.UUID, bytes]] = []
    for h in hashes:
        if isinstance(h, str):
            try:
                raw = bytes.fromhex(h)
            except ValueError:
                raise UsageError(f"{h[:70]!r} is not a SHA-256 in hex") from None
        else:
            raw = bytes(h)
        if len(raw) != 32:
            raise UsageError(f"a SHA-256 hash is 32 bytes, got {len(raw)}")
        entries.append((o, raw))
    if not entries:
        raise UsageError("no hashes given")
    return signature_list(EFI_CERT_SHA256_GUID, entries)


@dataclass(frozen=True)
class SignatureEntry:
    owner: uuid.UUID
    data: bytes


@dataclass(frozen=True)
class SignatureList:
    """One parsed ``EFI_SIGNATURE_LIST``."""

    signature_type: uuid.UUID
    header: bytes
    entries: tuple[SignatureEntry, ...]

    @property
    def kind(self) -> str:
        if self.signature_type == EFI_CERT_X509_GUID:
            return "x509"
        if self.signature_type == EFI_CERT_SHA256_GUID:
            return "sha256"
        return str(self.signature_type)


def parse_esl(data: bytes, *, source: str = "signature list") -> tuple[SignatureList, ...]:
    """Parse an ESL file (zero or more lists) strictly; any inconsistency is ``malformed`` naming the offset."""
    if len(data) > MAX_ESL_BYTES:
        raise MalformedError(f"{source} is larger than any EFI signature database ({len(data)} bytes)", subject=source)
    lists: list[SignatureList] = []
    pos = 0
    entries_seen = 0
    while pos < len(data):
        if len(lists) >= MAX_LISTS:
            raise MalformedError(f"{source} holds more than {MAX_LISTS} signature lists", subject=source)
        if len(data) - pos < ESL_HEADER.size:
            raise MalformedError(f"{source}: truncated signature list header at offset {pos}", subject=source)
        sig_type, list_size, header_size, sig_size = ESL_HEADER.unpack_from(data, pos)
        body_at = pos + ESL_HEADER.size + header_size
        end = pos + list_size
        if list_size < ESL_HEADER.size or end > len(data) or body_at > end:
            raise MalformedError(f"{source}: signature list at offset {pos} has a bad size {list_size}", subject=source)
        if sig_size <= 16 or (end - body_at) % sig_size or end == body_at:
            raise MalformedError(
                f"{source}: signature list at offset {pos} has entries of bad size {sig_size}", subject=source
            )
        stype = uuid.UUID(bytes_le=sig_type)
        if stype == EFI_CERT_SHA256_GUID and sig_size != SHA256_ENTRY:
            raise MalformedError(
                f"{source}: SHA-256 list at offset {pos} has entries of {sig_size} bytes", subject=source
            )
        count = (end - body_at) // sig_size
        entries_seen += count
        if entries_seen > MAX_ENTRIES:
            raise MalformedError(f"{source} holds more than {MAX_ENTRIES} signatures", subject=source)
        entries = tuple(
            SignatureEntry(uuid.UUID(bytes_le=data[at : at + 16]), data[at + 16 : at + sig_size])
            for at in range(body_at, end, sig_size)
        )
        lists.append(SignatureList(stype, data[pos + ESL_HEADER.size : body_at], entries))
        pos = end
    return tuple(lists)


def esl_certificates(data: bytes, *, source: str = "signature list") -> list[x509.Certificate]:
    """The X.509 certificates of an ESL (what ``sig-list-to-certs`` extracts)."""
    out = []
    for lst in parse_esl(data, source=source):
        if lst.signature_type != EFI_CERT_X509_GUID:
            continue
        for e in lst.entries:
            try:
                out.append(x509.load_der_x509_certificate(e.data))
            except ValueError:
                raise MalformedError(f"{source}: an X.509 entry is not a certificate", subject=source) from None
    return out


__all__ = [
    "EFI_CERT_SHA256_GUID",
    "EFI_CERT_X509_GUID",
    "EFI_TIME_SIZE",
    "ESL_HEADER",
    "MAX_ENTRIES",
    "MAX_ESL_BYTES",
    "MAX_LISTS",
    "SHA256_ENTRY",
    "ZERO_GUID",
    "ZERO_TIME",
    "EfiTime",
    "SignatureEntry",
    "SignatureList",
    "esl_certificates",
    "esl_from_certificates",
    "esl_from_hashes",
    "load_certificate",
    "parse_esl",
    "signature_list",
]
