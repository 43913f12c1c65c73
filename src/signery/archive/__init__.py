"""The one strict reader of package archives (ZIP): what it lists is exactly what any installer extracts.

Verification and installation both read archives through :class:`ZipArchive`, so there is no second parser that
could see different contents. Anything ambiguous or dangerous is refused with ``unsafe-archive`` and the entry
named: duplicate names (also after case folding and Unicode normalisation), absolute paths, ``..``, backslashes,
control characters, links and special files, encrypted entries, local headers that disagree with the central
directory, overlapping or unaccounted bytes, trailing data, multi-disk archives, unknown compression, and archives
beyond the limits in :class:`ArchiveLimits` (entries, sizes, compression ratio). Entry data is decompressed in
bounded chunks and checked against its CRC-32 and declared size.

The format is parsed here by hand (PKWARE APPNOTE 6.3) because :mod:`zipfile` is deliberately lenient: it accepts
duplicate names, overlapping entries and prefixed data, which are exactly the ambiguities attackers use.

Example::

    with ZipArchive.open(Path("plugin.zip")) as archive:
        for entry in archive.files:
            digest = archive.hash_entry(entry, ["sha256"])["sha256"]
"""

from __future__ import annotations

from ._model import _PARSE_CACHE as _PARSE_CACHE
from ._model import DEFAULT_LIMITS, ArchiveLimits, ZipEntry
from ._parse import _parse as _parse
from ._reader import ZipArchive, is_zip
from ._reader import _fastzip as _fastzip
from ._reader import _scan as _scan
from ._rules import check_entry_name, check_mode, fold_name
from ._writer import rewrite_zip

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveLimits",
    "ZipArchive",
    "ZipEntry",
    "check_entry_name",
    "check_mode",
    "fold_name",
    "is_zip",
    "rewrite_zip",
]
# Also importable from here, for tests, fuzzers and benchmarks (not API): _PARSE_CACHE, _fastzip, _parse, _scan.
