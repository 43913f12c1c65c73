"""The name and mode rules of the canonical archive (docs/formats/archives.md), shared by the ZIP and tar readers."""


from __future__ import annotations

import unicodedata

from ..errors import UnsafeArchiveError
from ._model import _CONTROL_CHARS, _MAX_NAME_BYTES

# Windows device names: opening "CON" or "a/NUL.txt" opens the device, not a file, whatever the extension.
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + [f"{d}{n}" for d in ("COM", "LPT") for n in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³"]]
)
_WINDOWS_RESERVED = frozenset('<>:"|?*')  # ':' opens an NTFS alternate data stream; the rest are invalid there
# Unicode categories a name may not use: controls, format characters (bidi overrides U+202E, zero-width U+200B,
# BOM U+FEFF), surrogates, private use, unassigned (readers on other Unicode versions see them differently),
# line and paragraph separators, and spaces other than U+0020.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def check_entry_name(name: str, *, raw: bytes | None = None) -> None:
    """Refuse names that could escape or confuse an extraction directory (raises ``unsafe-archive``).

    The rules are those of ``docs/formats/archives.md``: no empty, absolute, ``.`` or ``..`` paths, no backslash,
    no control, format (bidi, zero-width), private-use, unassigned or non-ASCII space characters, no component
    that Windows would read differently (a device name such as ``CON`` or ``nul.txt``, a trailing dot or space,
    any of ``<>:"|?*``), and at most 1,024 bytes.
    """
    subject = name
    if not name:
        raise UnsafeArchiveError("archive entry with an empty name", subject="<empty>")
    if raw is not None and len(raw) > _MAX_NAME_BYTES:
        raise UnsafeArchiveError(f"entry name is {len(raw)} bytes long", subject=subject[:80])
    if _CONTROL_CHARS.search(name):
        raise UnsafeArchiveError(f"entry name {name!r} contains a control character", subject=repr(name))
    if "\\" in name:
        raise UnsafeArchiveError(f"entry name {name!r} contains a backslash", subject=name)
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        raise UnsafeArchiveError(f"entry name {name!r} is an absolute path", subject=name)
    if not name.isascii():
        for ch in name:
            if ch != " " and unicodedata.category(ch) in _BAD_CATEGORIES:
                raise UnsafeArchiveError(
                    f"entry name {name!r} contains U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}), which "
                    "displays or lands differently from what it seems",
                    subject=repr(name),
                )
    if any(c in _WINDOWS_RESERVED for c in name):
        raise UnsafeArchiveError(
            f"entry name {name!r} contains one of <>:\"|?* (an NTFS stream or an invalid name on Windows)",
            subject=name,
        )
    parts = name.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeArchiveError(f"entry name {name!r} has an empty, '.' or '..' component", subject=name)
        if part[-1] in ". ":
            raise UnsafeArchiveError(
                f"entry name {name!r}: component {part!r} ends in a dot or space (Windows drops it)", subject=name
            )
        if part.split(".", 1)[0].rstrip(" ").upper() in _DEVICE_NAMES:
            raise UnsafeArchiveError(f"entry name {name!r}: {part!r} is a Windows device name", subject=name)


def fold_name(name: str) -> str:
    """The key under which two names would land on the same file somewhere: NTFS and APFS fold case (NTFS with
    its own upcase table, so ``maın.py`` meets ``MAIN.PY``), macOS normalises Unicode. Folding more than any one
    filesystem does only refuses more, never less."""
    return unicodedata.normalize("NFKC", name.rstrip("/")).upper().casefold()


_fold = fold_name



def check_mode(mode: int, is_dir: bool, name: str) -> None:
    """Refuse permission bits an extractor running as root would apply unsafely (shared by the tar reader):
    setuid, setgid, sticky, world-writable, and files their owner cannot read."""
    if mode & 0o7000:
        raise UnsafeArchiveError(f"entry {name!r} has setuid, setgid or sticky bits ({oct(mode)})", subject=name)
    if mode & 0o002:
        raise UnsafeArchiveError(f"entry {name!r} is world-writable ({oct(mode)})", subject=name)
    if not is_dir and not mode & 0o400:  # extractors defer directory modes to the end; a file's they apply at once
        raise UnsafeArchiveError(
            f"entry {name!r} has mode {oct(mode & 0o7777)}: its owner cannot read it", subject=name
        )


