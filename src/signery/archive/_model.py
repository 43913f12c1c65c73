"""The ZIP records' layout and flags, and the two value types: :class:`ArchiveLimits` and :class:`ZipEntry`."""


from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from typing import NamedTuple

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOC = b"PK\x06\x07"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"
_DD = b"PK\x07\x08"
_EOCD_FMT = struct.Struct("<4sHHHHIIH")  # 22 bytes
_EOCD64_LOC_FMT = struct.Struct("<4sIQI")  # 20 bytes
_EOCD64_FMT = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CDH_FMT = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_LFH_FMT = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_MAX_COMMENT = 0xFFFF
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF

STORED, DEFLATED = 0, 8
_FLAG_ENCRYPTED = 0x1
_FLAG_DATA_DESCRIPTOR = 0x8
_FLAG_STRONG_ENCRYPTION = 0x40
_FLAG_UTF8 = 0x800
_FLAG_MASKED_HEADERS = 0x2000
_UNIX = 3
_CHUNK = 1 << 20  # decompress in 1 MiB steps so a bomb never inflates beyond one step before it is caught
_MAX_EMPTY_DEFLATE = 16  # a directory entry's "compressed" empty body (deflate of b"" is 2 bytes)
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: terminal escapes and truncation tricks
_PARSE_CACHE_SIZE = 4  # detection and verification of one package share one parse
_DROP_MIN = 4 << 20  # below this, releasing mapped pages costs more than it saves
_DROP_STEP = 8 << 20  # mapped pages are released behind a large entry every so often as it is read
_FAST_DIGESTS = frozenset({"sha256", "sha512"})  # what the accelerator hashes (through OpenSSL, like hashlib)
_FAST_ENTRY_MAX = 16 << 20  # with a progress bar, larger entries are hashed one by one, with progress within each
_FAST_RUN_BYTES = 32 << 20  # compressed bytes per accelerator call when a progress bar is shown
_PROGRESS_STEP = 1 << 20  # compressed bytes between progress reports within a large entry
_THREADS = min(8, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_MAX_NAME_BYTES = 1024  # longer than any real path; PATH_MAX-class names are an attack on extractors


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may contain. Defaults fit real plugins with ample room.

    Attributes:
        max_entries: entry count (zip bombs with millions of empty entries exhaust inodes and memory).
        max_total_size: total uncompressed bytes (a bomb's declared total).
        max_entry_size: uncompressed bytes of one entry.
        max_ratio: uncompressed/compressed ratio for entries over ``ratio_floor`` bytes (classic deflate bombs
            reach ~1000:1; real code and assets stay far below 100:1).
        ratio_floor: entries smaller than this are not ratio-checked (tiny files compress oddly and harmlessly).
    """

    max_entries: int = 100_000
    max_total_size: int = 8 << 30
    max_entry_size: int = 4 << 30
    max_ratio: int = 200
    ratio_floor: int = 1 << 20

    def __post_init__(self) -> None:
        if min(self.max_entries, self.max_total_size, self.max_entry_size, self.max_ratio) < 1:
            raise ValueError("archive limits must be positive")


DEFAULT_LIMITS = ArchiveLimits()
_PARSE_CACHE: dict[tuple[object, ...], tuple[list[ZipEntry], bytes, int]] = {}


class ZipEntry(NamedTuple):
    """One entry as the central directory and its local header agree it is.

    A named tuple rather than a dataclass: archives with 100,000 entries create that many, and the accelerator
    builds them directly.
    """

    name: str
    position: int  # in the central directory
    is_dir: bool
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int
    end_offset: int  # end of data and of any data descriptor: where the next entry must begin
    mode: int
    cd_record: bytes  # the raw central-directory record, reused verbatim when the archive is rewritten


