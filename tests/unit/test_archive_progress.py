"""Progress while hashing archives: steady within one large entry, in compressed bytes, never more than the file.

``signery sign``/``verify`` size their bar with the package's file size and advance it by what
:meth:`ZipArchive.hash_files` and :meth:`ZipArchive.hex_digests` report: each entry's compressed bytes, once. A ZIP
holding one large entry must not sit at 0% and jump to 100%, whether the C accelerator hashes it (calling back
every ``_PROGRESS_STEP`` compressed bytes) or the pure-Python streaming reader does.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from signery import archive
from signery.archive import ZipArchive, _reader
from signery.errors import TamperedError

SIZE = 64 << 20
BUILDS = ["accelerated", "pure"]
METHODS = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    """One 64 MiB entry each: random bytes stored; hex text deflated (about 2:1, as source code or assets)."""
    root = tmp_path_factory.mktemp("progress")
    out = {}
    for label, method in METHODS.items():
        content = os.urandom(SIZE) if method == zipfile.ZIP_STORED else os.urandom(SIZE // 2).hex().encode()
        path = root / f"{label}.zip"
        with zipfile.ZipFile(path, "w", method, compresslevel=1) as zf:
            zf.writestr("big.bin", content)
        out[label] = (path, content)
    return out


@pytest.fixture(params=BUILDS)
def build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "accelerated" and archive._fastzip is None:
        if os.environ.get("CI"):
            pytest.fail("the C accelerator signery._fastzip was not built (see setup.py and scripts/test)")
        pytest.skip("the C accelerator is not built here")
    if request.param == "pure":
        monkeypatch.setattr(_reader, "_fastzip", None)  # the module that calls the accelerator
    archive._PARSE_CACHE.clear()
    yield request.param
    archive._PARSE_CACHE.clear()


def assert_steady(seen: list[int], total: int) -> None:
    """Many positive steps (so the running total only ever grows) that end exactly at ``total``."""
    assert len(seen) >= 16, seen
    assert all(n > 0 for n in seen), seen
    assert sum(seen) == total


HASHES: dict[str, Callable[[ZipArchive, Callable[[int], None]], list[tuple[str, dict[str, str]]]]] = {
    "hex_digests": lambda z, p: [(n, {"sha256": d}) for n, d in z.hex_digests("sha256", progress=p)],
    "hash_files": lambda z, p: [
        (e.name, {a: d.hex() for a, d in ds.items()}) for e, ds in z.hash_files(["sha256"], progress=p)
    ],
    "two algorithms": lambda z, p: [
        (e.name, {a: d.hex() for a, d in ds.items()}) for e, ds in z.hash_files(["sha256", "sha512"], progress=p)
    ],
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("how", list(HASHES))
def test_one_large_entry_reports_progress_as_it_is_hashed(
    packages: dict[str, tuple[Path, bytes]], build: str, method: str, how: str
) -> None:
    path, content = packages[method]
    seen: list[int] = []
    with ZipArchive.open(path) as z:
        (entry,) = z.files
        got = HASHES[how](z, seen.append)
    algs = sorted(got[0][1])
    assert got == [("big.bin", {a: hashlib.new(a, content).hexdigest() for a in algs})]
    assert_steady(seen, entry.compressed_size)  # what the bar sized with the file adds up to
    assert sum(seen) <= path.stat().st_size
    if method == "deflated":
        assert entry.compressed_size < SIZE * 3 // 4  # the units are compressed bytes, not content


def test_progress_adds_up_over_small_and_large_entries(tmp_path: Path, build: str) -> None:
    files = {f"small{i}.txt": os.urandom(1000 * i) for i in range(50)}
    files["large.bin"] = os.urandom(20 << 20)
    files.update({f"z{i}.txt": b"x" * (100 * i) for i in range(50)})
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    seen: list[int] = []
    with ZipArchive.open(path) as z:
        digests = z.hex_digests("sha256", progress=seen.append)
        total = sum(e.compressed_size for e in z.files)
    assert digests == [(n, hashlib.sha256(c).hexdigest()) for n, c in files.items()]
    assert sum(seen) == total and len(seen) >= 16 and all(n > 0 for n in seen)


def test_a_run_read_again_is_not_counted_twice(
    packages: dict[str, tuple[Path, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the accelerator gives up on a run after reporting part of it, the reference's re-read only moves the
    bar past what it had already shown."""
    fastzip = archive._fastzip
    if fastzip is None:
        pytest.skip("the C accelerator is not built here")

    def gives_up(*args: Any) -> Any:
        got = fastzip.digest(*args)  # reports all of the run, then is treated as unconfirmed
        assert isinstance(got, list)
        return 0

    monkeypatch.setattr(_reader, "_fastzip", _Proxy(fastzip, digest=gives_up))
    path, content = packages["deflated"]
    seen: list[int] = []
    archive._PARSE_CACHE.clear()
    with ZipArchive.open(path) as z:
        (entry,) = z.files
        assert z.hex_digests("sha256", progress=seen.append) == [("big.bin", hashlib.sha256(content).hexdigest())]
    assert_steady(seen, entry.compressed_size)


@pytest.mark.parametrize("where", [0.25, 0.999])  # the accelerator gives up early or late
def test_a_damaged_large_entry_never_reports_more_than_its_size(tmp_path: Path, build: str, where: float) -> None:
    content = os.urandom(24 << 20)
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big.bin", content)
    with ZipArchive.open(path) as z:
        (entry,) = z.files
    data = bytearray(path.read_bytes())
    data[entry.data_offset + int(entry.size * where)] ^= 1
    path.write_bytes(bytes(data))
    archive._PARSE_CACHE.clear()
    seen: list[int] = []
    with ZipArchive.open(path) as z, pytest.raises(TamperedError, match="CRC-32"):
        z.hex_digests("sha256", progress=seen.append)
    assert 0 < sum(seen) <= entry.compressed_size and all(n > 0 for n in seen)  # read again, not counted twice


def test_an_exception_from_the_callback_stops_hashing(packages: dict[str, tuple[Path, bytes]], build: str) -> None:
    class Stop(Exception):
        pass

    seen: list[int] = []

    def stop_at_half(n: int) -> None:
        seen.append(n)
        if sum(seen) >= SIZE // 2:
            raise Stop

    path, _ = packages["stored"]
    with ZipArchive.open(path) as z, pytest.raises(Stop):
        z.hex_digests("sha256", progress=stop_at_half)
    assert SIZE // 2 <= sum(seen) < SIZE


def test_without_progress_the_digests_are_the_same(packages: dict[str, tuple[Path, bytes]], build: str) -> None:
    for path, content in packages.values():
        with ZipArchive.open(path) as z:
            assert z.hex_digests("sha256") == [("big.bin", hashlib.sha256(content).hexdigest())]
            assert z.hash_files(["sha512"])[0][1] == {"sha512": hashlib.sha512(content).digest()}


class _Proxy:
    """The accelerator module with some of its functions replaced."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)
