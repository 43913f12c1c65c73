"""Types of the optional C accelerator (src/signery/_fastzip.c); see signery.archive for how it is used."""

from collections.abc import Callable, Sequence

from .archive import ZipEntry

Buffer = bytes | bytearray | memoryview | object  # anything with the buffer protocol (an mmap)

def scan(
    buffer: Buffer, limits: tuple[int, int, int, int, int], entry_type: type[ZipEntry]
) -> tuple[list[ZipEntry], bytes, int] | None: ...
# One digest an entry (hex strings when ``hex``, else bytes; ``None`` for an entry over ``max_entry``, left to the
# caller), or the index of the first entry it could not confirm.
def digest(
    buffer: Buffer,
    entries: Sequence[ZipEntry],
    algorithm: str,
    threads: int,
    hex: bool = ...,
    max_entry: int = ...,
    progress: Callable[[int], object] | None = ...,
    step: int = ...,
) -> list[str | None] | list[bytes | None] | int: ...
def subjects_json(pairs: Sequence[tuple[str, str]], algorithm: str) -> bytes | None: ...
