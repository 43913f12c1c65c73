"""Signature formats: one module each, every one exposing a :class:`~signery.formats._base.Format` as ``FORMAT``.

``FORMATS`` names them (imported on demand: a verify of a native package never imports Sequoia or YAML);
:func:`get_format` returns one, :func:`names` lists them, :func:`detect_formats` says which a subject carries,
:func:`verify_all` judges them all as one result, :func:`infer_format` picks the one to sign with, :func:`sign`
signs without overwriting what it should not, and :func:`default_trust` is the keys the formats trust out of the
box. A format never opens a socket, prints, exits or reads environment variables.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from ..errors import UsageError
from ..keys import Signer
from ..result import VerificationResult
from ..trust import TrustSet
from ._base import Format, Options
from ._sniff import PRECONDITIONS, WITH_DEFAULT_TRUST

# Format name -> module. Order matters: detection tries the first formats first.
FORMATS: dict[str, str] = {
    "native": "signery.formats.native",
    "dify": "signery.formats.dify",
    "openpgp": "signery.formats.openpgp",
    "ocm": "signery.formats.ocm",
    # What a balenaOS build boots (detected only when asked by name or by their files' own structure).
    "authenticode": "signery.formats.authenticode",
    "kmod": "signery.formats.kmod",
    "uefi": "signery.formats.uefi",
    "raw-rsa": "signery.formats.rawrsa",
    "rpi-eeprom": "signery.formats.rpi_eeprom",
}
# Format inference tries these, in this order, before falling back to native.
_INFERENCE = ("openpgp", "ocm", "dify")
_LOADED: dict[str, Format] = {}


def names() -> list[str]:
    """The names of the signature formats, in detection order."""
    return list(FORMATS)


def get_format(name: str) -> Format:
    """The :class:`Format` called ``name``; a usage error naming the choices for an unknown one."""
    fmt = _LOADED.get(name)
    if fmt is not None:
        return fmt
    try:
        module = importlib.import_module(FORMATS[name])
    except KeyError:
        raise UsageError(f"unknown signature format {name!r}; choose one of {', '.join(FORMATS)}") from None
    fmt = cast(Format, module.FORMAT)
    _LOADED[name] = fmt
    return fmt


def get_format_or_none(name: str | None) -> Format | None:
    """The format called ``name``, or ``None`` for a name that is no format or one whose module is not installed."""
    if name not in FORMATS:
        return None
    try:
        return get_format(name)
    except ModuleNotFoundError:
        return None


def detect_formats(subject: Path, *, signature: Path | None = None, only: Iterable[str] | None = None) -> list[str]:
    """Names of the formats whose signatures ``subject`` carries (a format whose module is absent is skipped).

    With ``signature`` (a detached file) only formats that detach are asked.
    """
    found: list[str] = []
    for name in only or FORMATS:
        cheap = PRECONDITIONS.get(name)
        if signature is None and cheap is not None and not cheap(Path(subject)):
            continue  # cannot carry it: the format's module (and its dependencies) is not even imported
        try:
            fmt = get_format(name)
        except ModuleNotFoundError:
            continue
        if signature is not None and not fmt.detaches:
            continue
        if signature is None and not fmt.may_carry(Path(subject)):
            continue
        if fmt.detect(subject, signature=signature):
            found.append(name)
    return found


def verify_all(
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


verify_detected = verify_all  # the name of earlier releases


def default_trust(formats: Iterable[str] | None = None) -> TrustSet:
    """The keys the given formats (default: all) trust out of the box, each constrained to its format.

    Only the formats of :data:`~signery.formats._sniff.WITH_DEFAULT_TRUST` are asked, so that a verify against the
    trust store imports no other format (a test keeps that list equal to the formats whose answer is not empty).
    """
    trust = TrustSet()
    for name in formats or FORMATS:
        if name not in WITH_DEFAULT_TRUST:
            continue
        try:
            trust = trust.union(get_format(name).default_trust())
        except ModuleNotFoundError:
            continue
    return trust


def infer_format(subject: Path, signer: Signer) -> str:
    """The format to sign ``subject`` with when none is named.

    An OpenPGP key signs OpenPGP, a component archive signs OCM, a ``.difypkg`` with an RSA key signs Dify, and
    everything else gets signery's native format.
    """
    for name in _INFERENCE:
        try:
            fmt = get_format(name)
        except ModuleNotFoundError:
            continue
        if fmt.suits(Path(subject), signer):
            return name
    return "native"


def sign(
    subject: Path,
    signer: Signer,
    *,
    format: str | None = None,
    output: Path | None = None,
    options: Options | Mapping[str, Any] | None = None,
    overwrite: bool = False,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Format, Path]:
    """Sign ``subject`` in ``format`` (inferred when ``None``); return the format used and the path written.

    An existing output is never replaced unless ``overwrite``, or the format keeps what it holds (a native
    countersignature added to a signature file or to the package itself).

    Raises:
        UsageError: an unknown format, an option that format does not take, or an output that exists.
    """
    subject = Path(subject)
    fmt = get_format(format or infer_format(subject, signer))
    opts = fmt.options(dict(options or {})) if options is None or isinstance(options, Mapping) else options
    signer = fmt.prepare(signer, opts)  # a signer the format cannot use is refused before anything else
    target = Path(output) if output is not None else fmt.default_output(subject, opts)
    if target.exists() and not overwrite and not fmt.merges_into(subject, target, opts):
        raise UsageError(
            f"{target} exists; signing would overwrite it",
            subject=str(target),
            hint="give --output elsewhere, or --force to replace it",
        )
    written = fmt.sign(subject, signer, output=output, options=opts, now=now, progress=progress)
    return fmt, written


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


__all__ = [
    "FORMATS",
    "Format",
    "Options",
    "default_trust",
    "detect_formats",
    "get_format",
    "get_format_or_none",
    "infer_format",
    "names",
    "sign",
    "verify_all",
]
