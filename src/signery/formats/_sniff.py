"""Cheap necessary conditions for each format's signatures, checked before the format's module is imported.

`signery verify` asks every format whether a subject carries its signatures. Importing a format brings its
dependencies (YAML for OCM, the CMS and PE parsers, Sequoia-free OpenPGP packet code...), which costs more than
verifying a small plugin. Each predicate here reads at most a few bytes or stats a sibling file, imports nothing
beyond the standard library, and may only say "cannot carry": the format's own ``may_carry``/``detect`` decide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Sniffer = Callable[[Path], bool]

_OCM_DESCRIPTOR = "component-descriptor.yaml"  # ocm/_layout.py's DESCRIPTOR_FILE and CTF_INDEX: a test keeps
_OCM_INDEX = "artifact-index.json"  # these in step without importing OCM here
KMOD_MAGIC = b"~Module signature appended~\n"


def _head(subject: Path, n: int) -> bytes:
    try:
        with Path(subject).open("rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def zip_with_comment(subject: Path) -> bool:
    """A ZIP whose end record announces a comment (where Dify keeps its signature); reads 26 bytes."""
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


def sidecar(*suffixes: str) -> Sniffer:
    """A file ``SUBJECT + suffix`` (or ``SUBJECT`` with its suffix replaced) beside the subject."""

    def found(subject: Path) -> bool:
        subject = Path(subject)
        names = [subject.with_name(subject.name + s) for s in suffixes]
        if subject.suffix:
            names += [subject.with_suffix(s) for s in suffixes]
        return any(p != subject and p.is_file() for p in names)

    return found


def pe_image(subject: Path) -> bool:
    """An MZ (PE/EFI) image."""
    return _head(subject, 2) == b"MZ"


def kernel_module(subject: Path) -> bool:
    """A file ending in the kernel's module-signature marker."""
    try:
        with Path(subject).open("rb") as fh:
            size = fh.seek(0, 2)
            if size < len(KMOD_MAGIC):
                return False
            fh.seek(size - len(KMOD_MAGIC))
            return fh.read(len(KMOD_MAGIC)) == KMOD_MAGIC
    except OSError:
        return False


def component_archive(subject: Path) -> bool:
    """An OCM component archive (a directory with a descriptor, or a tar) or a CTF directory."""
    subject = Path(subject)
    if subject.is_dir():
        return (subject / _OCM_DESCRIPTOR).is_file() or (subject / _OCM_INDEX).is_file()
    head = _head(subject, 262)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def uefi_auth(subject: Path) -> bool:
    """An ``X.auth`` update, or a subject with one beside it."""
    subject = Path(subject)
    return subject.suffix == ".auth" or subject.with_suffix(".auth").is_file()


# Format name -> its precondition; a format not listed is always asked (native: any file may have a sidecar).
PRECONDITIONS: dict[str, Sniffer] = {
    "dify": zip_with_comment,
    "openpgp": sidecar(".sig", ".asc"),
    "ocm": component_archive,
    "authenticode": pe_image,
    "kmod": kernel_module,
    "uefi": uefi_auth,
    "raw-rsa": sidecar(".sig"),
    "rpi-eeprom": sidecar(".sig"),
}

# The formats whose ``default_trust()`` is not empty (Dify's marketplace key): the only ones a verify against the
# trust store imports for it.
WITH_DEFAULT_TRUST: frozenset[str] = frozenset({"dify"})
