"""Types of the optional C accelerator (src/signery/_fastzip.c); see signery.archive for how it is used."""

from collections.abc import Sequence
from typing import Literal, overload

from .archive import ZipEntry

Buffer = bytes | bytearray | memoryview | object  # anything with the buffer protocol (an mmap)

def scan(
    buffer: Buffer, limits: tuple[int, int, int, int, int], entry_type: type[ZipEntry]
) -> tuple[list[ZipEntry], bytes, int] | None: ...
@overload
def digest(buffer: Buffer, entries: Sequence[ZipEntry], algorithm: str, threads: int) -> list[bytes] | int: ...
@overload
def digest(
    buffer: Buffer, entries: Sequence[ZipEntry], algorithm: str, threads: int, hex: Literal[False]
) -> list[bytes] | int: ...
@overload
def digest(
    buffer: Buffer, entries: Sequence[ZipEntry], algorithm: str, threads: int, hex: Literal[True]
) -> list[str] | int: ...
@overload
def digest(
    buffer: Buffer, entries: Sequence[ZipEntry], algorithm: str, threads: int, hex: bool
) -> list[str] | list[bytes] | int: ...
