"""Signature formats, one module each, all with the same shape.

Each format module ``signery.formats.<name>`` provides:

- ``NAME: str`` - the format's name (``native``, ``dify``, ``openpgp``, ``ocm``).
- ``sign(subject: Path, signer, *, output: Path | None = None, **options) -> Path`` - write the signed artifact
  (or detached signature) atomically and return its path. ``signer`` is a :class:`signery.keys.Signer`
  (or, for OpenPGP, a :class:`signery.openpgp.OpenPGPSigner`).
- ``verify(subject: Path, *, trust: TrustSet, signature: Path | None = None, threshold: int = 1,
  now: datetime | None = None) -> VerificationResult`` - never a bare bool; raises
  :class:`~signery.errors.MalformedError` for unusable input and
  :class:`~signery.errors.UnsafeArchiveError` for dangerous archives.
- ``detect(subject: Path, *, signature: Path | None = None) -> bool`` - whether the subject carries a signature
  in this format (cheap; does not verify).
- ``inspect(subject: Path, *, signature: Path | None = None) -> dict`` - what the signatures say, without
  judging trust.

A format module never opens a socket, prints, exits or reads environment variables.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import ModuleType

from ..result import VerificationResult
from ..trust import TrustSet

# Format name -> module. Order matters for detection: the first formats are tried first.
FORMATS: dict[str, str] = {
    "native": "signery.formats.native",
    "dify": "signery.formats.dify",
    "openpgp": "signery.formats.openpgp",
}


def get_format(name: str) -> ModuleType:
    """Import the module of a signature format by name."""
    from ..errors import UsageError

    try:
        return importlib.import_module(FORMATS[name])
    except KeyError:
        raise UsageError(f"unknown signature format {name!r}; choose one of {', '.join(FORMATS)}") from None


__all__ = ["FORMATS", "get_format"]


def _zip_with_comment(subject: Path) -> bool:
    """Whether ``subject`` may be a ZIP with a comment (Dify's signature lives there); reads 26 bytes."""
    try:
        with Path(subject).open("rb") as fh:
            head = fh.read(4)
            size = fh.seek(0, 2)
            if size < 22 or head not in (b"PK\x03\x04", b"PK\x05\x06"):
                return False
            fh.seek(size - 22)
            tail = fh.read(22)
    except OSError:
        return False
    return not (tail[:4] == b"PK\x05\x06" and tail[20:22] == b"\x00\x00")  # a comment-less end record


def _sidecar(*suffixes: str) -> Callable[[Path], bool]:
    return lambda subject: any(subject.with_name(subject.name + s).is_file() for s in suffixes)


# Cheap file-level preconditions, checked before a format's module (and its dependencies: YAML, Sequoia...) is
# imported, so that `signery verify` starts fast. The module's own ``detect`` still decides.
_MAY_CARRY: dict[str, Callable[[Path], bool]] = {
    "dify": _zip_with_comment,
    "openpgp": _sidecar(".sig", ".asc"),
}


def detect_formats(subject: Path, *, signature: Path | None = None, only: Iterable[str] | None = None) -> list[str]:
    """Names of the formats whose signatures ``subject`` carries (a format whose module is absent is skipped)."""
    found: list[str] = []
    for name in only or FORMATS:
        may_carry = _MAY_CARRY.get(name)
        if signature is None and may_carry is not None and not may_carry(Path(subject)):
            continue
        try:
            module = get_format(name)
        except ModuleNotFoundError:
            continue
        if module.detect(subject, signature=signature):
            found.append(name)
    return found


def verify_detected(
    subject: Path,
    *,
    trust: TrustSet,
    signature: Path | None = None,
    threshold: int = 1,
    formats: Iterable[str] | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerificationResult:
    """Verify every signature ``subject`` carries, in whatever formats, and combine them into one result.

    With no signature in any format the result's reason is ``unsigned``. ``progress`` is told the bytes of
    ``subject`` read so far, as far as the format that has read the most of it has got: formats read it one after
    the other, and a bar sized to the file should neither overrun nor start again.
    """
    result = VerificationResult(str(subject), (), threshold=threshold)
    mark = _HighWater(progress) if progress is not None else None
    for name in detect_formats(subject, signature=signature, only=formats):
        report = mark.next_reader() if mark is not None else None
        part = get_format(name).verify(
            subject, trust=trust, signature=signature, threshold=threshold, now=now, progress=report
        )
        result = result.merged(part)
    return result


class _HighWater:
    """Passes on how far the furthest of several sequential readers has got (as increments)."""

    def __init__(self, progress: Callable[[int], None]) -> None:
        self._progress, self._shown, self._read = progress, 0, 0

    def next_reader(self) -> Callable[[int], None]:
        self._read = 0
        return self._advance

    def _advance(self, n: int) -> None:
        self._read += n
        if self._read > self._shown:
            self._progress(self._read - self._shown)
            self._shown = self._read
