"""The C accelerator against the pure-Python reader it speeds up: it may only ever agree with it.

``signery._fastzip.scan`` either returns exactly what ``archive._parse`` returns, or ``None`` (the reference then
judges); it must never accept an archive the reference refuses. ``digest`` either returns the reference's digests,
or the index of an entry that the reference refuses too. Hypothesis builds archives, honest and hostile, and
mutates their bytes.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signery import archive
from signery.archive import DEFAULT_LIMITS, ArchiveLimits, ZipArchive, ZipEntry, _reader
from signery.errors import SigneryError, TamperedError
from zipcraft import E, build

if archive._fastzip is None:
    if os.environ.get("CI"):
        pytest.fail("the C accelerator signery._fastzip was not built (see setup.py and scripts/test)")
    pytest.skip("the C accelerator is not built here", allow_module_level=True)
fastzip = archive._fastzip

BOUNDS = (
    DEFAULT_LIMITS.max_entries,
    DEFAULT_LIMITS.max_total_size,
    DEFAULT_LIMITS.max_entry_size,
    DEFAULT_LIMITS.max_ratio,
    DEFAULT_LIMITS.ratio_floor,
)


def reference(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> tuple[list[ZipEntry], bytes, int] | None:
    try:
        return archive._parse(data, len(data), limits, "test.zip")  # type: ignore[arg-type]
    except SigneryError:
        return None


def assert_agrees(data: bytes) -> tuple[list[ZipEntry], bytes, int] | None:
    fast = fastzip.scan(data, BOUNDS, ZipEntry)
    ref = reference(data)
    if fast is not None:
        assert ref is not None, "the accelerator accepted an archive the reference refuses"
        assert fast == ref
        assert all(type(e) is ZipEntry for e in fast[0])
    return ref


NAMES = [
    b"a.txt", b"A.TXT", b"dir/", b"dir/x.py", b"dir", b"dir/sub/", b"dir/sub/y", b"x/../y", b"./z", b"/abs",
    b"c:x", b"sp ace", b'q"uote', b"back\\slash", b"\x01ctl", b"caf\xc3\xa9", b"a//", b"dir//x", b"del\x7f",
    b"n" * 1025, b"..", b"a/.", b"trail/", b"CON", b"a/nul.txt", b"Com1.py", b"dot.", b"sp /x", b"a:b",
    b"LPT9", b"conin$", b"consoles", b"a<b", b"x|y", b"caf\x82",
]  # fmt: skip
EXTRAS = [
    b"", b"UT\x05\x00\x01\x00\x00\x00\x00", b"xl\x00\x00", b"\x01\x00\x08\x00" + bytes(8),
    b"UT\x05\x00\x01\x00\x00\x00\x00UT\x00\x00", b"ux\x0b\x00\x01\x04\x00\x00\x00\x00\x04\x00\x00\x00\x00",
    b"\x0a\x00", b"\x0d\x00\x00\x00", b"\xfe\xca\x00\x00",
]  # fmt: skip
MODES = [
    stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777, 0, stat.S_IFIFO, stat.S_IFREG | 0o4755,
    stat.S_IFREG | 0o666, stat.S_IFREG, stat.S_IFDIR | 0o1777, stat.S_IFDIR, 0o755,
]  # fmt: skip

entry = st.builds(
    E,
    name=st.sampled_from(NAMES),
    data=st.binary(max_size=300),
    method=st.sampled_from([0, 8]),
    flags=st.sampled_from([0, 0x800, 0x1]),
    mode=st.sampled_from(MODES),
    made_by=st.sampled_from([(3 << 8) | 20, 20, (10 << 8) | 20, (19 << 8) | 20]),
    dos_attr=st.sampled_from([0, 0, 0x10, 0x01, 0x20]),
    cd_extra=st.sampled_from(EXTRAS),
    local_extra=st.sampled_from(EXTRAS),
    comment=st.sampled_from([b"", b"", b"hello", b"PK\x06\x07"]),
)


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    entries = draw(st.lists(entry, min_size=1, max_size=6))
    for e in entries:
        if e.name.endswith(b"/") and draw(st.booleans()):
            e.data = b""
    comments = [b"", b"note", b"PK\x05\x06", b"PK\x01\x02", b"PKPK"]
    data = bytearray(build(entries, comment=draw(st.sampled_from(comments))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(hostile())
def test_scan_never_accepts_what_the_reference_refuses(data: bytes) -> None:
    assert_agrees(data)


def zipfile_archive(files: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED, streamed: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, content in files.items():
            if streamed:  # written through a stream: zipfile adds data descriptors
                with z.open(name, "w") as fh:
                    fh.write(content)
            else:
                z.writestr(name, content)
    return buf.getvalue()


plain_names = st.lists(
    st.text(st.sampled_from("abcXYZ019_-."), min_size=1, max_size=8).filter(lambda s: not s.endswith(".")),
    min_size=1,
    max_size=3,
).map("/".join)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(plain_names, st.binary(max_size=2000), min_size=1, max_size=12),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.booleans(),
)
def test_plain_archives_take_the_fast_path_with_the_same_result(
    files: dict[str, bytes], method: int, streamed: bool
) -> None:
    folded = [n.lower() for n in files]
    assume(len(set(folded)) == len(folded))
    assume(not any(a.startswith(b + "/") for a in folded for b in folded))  # no file also used as a directory
    data = zipfile_archive(files, method=method, streamed=streamed)
    fast = fastzip.scan(data, BOUNDS, ZipEntry)
    assert fast is not None, "an ordinary archive fell back to the slow path"
    assert fast == reference(data)


def test_limits_are_left_to_the_reference() -> None:
    data = zipfile_archive({f"f{i}": b"x" for i in range(5)})
    assert fastzip.scan(data, (4, *BOUNDS[1:]), ZipEntry) is None
    assert fastzip.scan(data, (BOUNDS[0], 4, *BOUNDS[2:]), ZipEntry) is None
    assert fastzip.scan(data, BOUNDS, ZipEntry) is not None


def test_file_under_a_file_of_the_same_folded_name_falls_back() -> None:
    data = build([E(name=b"Tool"), E(name=b"tool/x")])
    assert fastzip.scan(data, BOUNDS, ZipEntry) is None
    assert reference(data) is None


# -- digests ---------------------------------------------------------------------------------------------------


def reference_digests(path: Path, alg: str) -> list[bytes | SigneryError]:
    """Each file entry's digest as the pure-Python reader computes it, or the error it raises."""
    saved = _reader._fastzip
    _reader._fastzip = None  # the module that calls the accelerator
    archive._PARSE_CACHE.clear()
    try:
        with ZipArchive.open(path) as z:
            out: list[bytes | SigneryError] = []
            for e in z.files:
                try:
                    out.append(z.hash_entry(e, [alg])[alg])
                except SigneryError as exc:
                    out.append(exc)
            return out
    finally:
        _reader._fastzip = saved
        archive._PARSE_CACHE.clear()


def with_file(data: bytes, check: Callable[[Path], None]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "t.zip")
        path.write_bytes(data)
        check(path)


@st.composite
def damaged_bodies(draw: st.DrawFn) -> bytes:
    """Archives whose structure is sound but whose entry data may lie: CRC, size or deflate stream."""
    entries = []
    for i in range(draw(st.integers(1, 6))):
        e = E(name=f"f{i}".encode(), data=draw(st.binary(max_size=400)), method=draw(st.sampled_from([0, 8])))
        body = archive_body(e)
        damage = draw(st.sampled_from(["none", "flip", "append"]))
        if damage == "flip" and body:
            b = bytearray(body)
            b[draw(st.integers(0, len(b) - 1))] ^= draw(st.integers(1, 255))
            e.body = bytes(b)
        elif damage == "append":  # bytes after the end of the compressed stream (or of a stored body)
            e.body = body + draw(st.binary(min_size=1, max_size=8))
        if draw(st.integers(0, 4)) == 0:
            e.usize = max(0, len(e.data) + draw(st.sampled_from([-1, 1])))
        entries.append(e)
    return build(entries)


def archive_body(e: E) -> bytes:
    from zipcraft import _payload

    return _payload(e)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_bodies(), st.sampled_from(["sha256", "sha512"]), st.integers(1, 3))
def test_digest_agrees_with_the_reference(data: bytes, alg: str, threads: int) -> None:
    ref_parse = reference(data)
    assume(ref_parse is not None)

    def check(path: Path) -> None:
        expected = reference_digests(path, alg)
        with ZipArchive.open(path) as z:
            got = fastzip.digest(z._map, list(z.files), alg, threads)
        if isinstance(got, int):
            assert isinstance(expected[got], SigneryError), "the accelerator refused an entry the reference accepts"
            assert all(isinstance(d, bytes) for d in expected[:got])
        else:
            assert got == expected

    with_file(data, check)


def test_digest_hex_and_threads_agree(tmp_path: Path) -> None:
    files = {f"pkg/m{i:03d}.py": os.urandom(i * 37 % 3000) + b"x" * i for i in range(300)}
    path = tmp_path / "p.zip"
    path.write_bytes(zipfile_archive(files))
    with ZipArchive.open(path) as z:
        entries = list(z.files)
        for alg in ("sha256", "sha512"):
            want = [hashlib.new(alg, files[e.name]).digest() for e in entries]
            for threads in (1, 2, 4, 64):
                assert fastzip.digest(z._map, entries, alg, threads) == want
                assert fastzip.digest(z._map, entries, alg, threads, True) == [d.hex() for d in want]
        assert fastzip.digest(z._map, [], "sha256", 2) == []
        with pytest.raises(ValueError, match="unsupported"):
            fastzip.digest(z._map, entries, "md5", 1)


# A fixed-Huffman deflate stream: "AAAA", then the reserved length symbol 286 (distance 1), then end of block.
# zlib refuses it ("invalid literal/length code"); libdeflate's inflater would accept it as a length of 258.
RESERVED_SYMBOL_STREAM = bytes.fromhex("737474741c0300")


def test_reserved_deflate_symbols_are_refused_whatever_the_build(tmp_path: Path) -> None:
    data = b"A" * 262  # what a lenient inflater produces, so that CRC and size agree with it
    path = tmp_path / "reserved.zip"
    path.write_bytes(build([E(b"a.txt", data=data, method=8, body=RESERVED_SYMBOL_STREAM), E(b"b.txt", method=8)]))
    with ZipArchive.open(path) as z:
        assert fastzip.digest(z._map, list(z.files), "sha256", 2) == 0  # entry 0 is not confirmed: the reference
        with pytest.raises(TamperedError, match="corrupt compressed data") as err:
            z.hash_files(["sha256"])
    assert err.value.subject == "a.txt"


def test_a_bad_entry_in_a_fast_run_is_reported_by_the_reference(tmp_path: Path) -> None:
    entries = [E(name=f"f{i}".encode(), data=b"data %d" % i, method=8) for i in range(50)]
    entries[31].crc = 1234
    path = tmp_path / "bad.zip"
    path.write_bytes(build(entries))
    with ZipArchive.open(path) as z, pytest.raises(TamperedError, match=r"'f31'.*CRC-32") as err:
        z.hash_files(["sha256"])
    assert err.value.subject == "f31"


def test_large_entries_are_left_to_the_streaming_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"f{i}": os.urandom(50 * i) for i in range(12)}
    path = tmp_path / "mixed.zip"
    path.write_bytes(zipfile_archive(files, method=zipfile.ZIP_STORED))
    with ZipArchive.open(path) as z:
        entries = list(z.files)
        got = fastzip.digest(z._map, entries, "sha256", 2, False, 300)
        assert isinstance(got, list)
        for e, d in zip(entries, got, strict=True):
            assert d == (None if e.size >= 300 else hashlib.sha256(files[e.name]).digest())
        monkeypatch.setattr(_reader, "_FAST_ENTRY_MAX", 300)
        monkeypatch.setattr(_reader, "_FAST_RUN_BYTES", 100)
        monkeypatch.setattr(ZipArchive, "size", property(lambda self: 1 << 40))  # as if huge: runs, with progress
        seen: list[int] = []
        digests = z.hex_digests("sha256", progress=seen.append)
    assert digests == [(n, hashlib.sha256(c).hexdigest()) for n, c in files.items()]
    assert sum(seen) == sum(e.compressed_size for e in entries) and len(seen) > 2


@pytest.mark.parametrize("ratio", [1, 2, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, (1 << 64) - 1, 1 << 80])
def test_compression_ratio_limit_agrees_at_every_scale(ratio: int) -> None:
    data = zipfile_archive({"big.txt": b"a" * 100_000, "small.txt": b"b"})
    limits = ArchiveLimits(max_ratio=ratio, ratio_floor=10, max_total_size=1 << 80)
    fast = archive._scan(data, limits)  # type: ignore[arg-type]
    ref = reference(data, limits)
    assert (fast is None or fast == ref) and (ref is not None) == (ratio >= 100_000 // 100)


# -- subjects_json: the canonical subject array that verification compares byte for byte ---------------------------

# Names as archives hold them: mostly plain, with some characters JSON escapes and some outside ASCII.
json_text = st.text(alphabet=st.sampled_from(list('abcXYZ019./-_ ~\x7f"\\\x00\x1f\x0aé€😀')), max_size=12)


@settings(max_examples=400)
@given(
    st.lists(st.tuples(json_text, json_text), max_size=8),
    st.sampled_from(["sha256", "sha512", "blake3", 'we"ird', "ünï"]),
)
def test_subjects_json_writes_what_the_python_writer_writes(pairs: list[tuple[str, str]], alg: str) -> None:
    from signery.formats.native import _subjects_json_py

    fast = fastzip.subjects_json(pairs, alg)
    plain = all(
        s.isascii() and not any(c in s for c in '"\\') and all(ord(c) >= 0x20 for c in s)
        for s in [alg, *(x for pair in pairs for x in pair)]
    )
    assert (fast is not None) == plain  # it declines exactly what it cannot write without escapes
    if fast is not None:
        assert fast == _subjects_json_py(pairs, alg)
        # And, independently of both writers, it is the JSON of those subjects.
        assert json.loads(b"[" + fast + b"]") == [{"digest": {alg: h}, "name": n} for n, h in pairs]


def test_subjects_json_declines_what_is_not_a_list_of_string_pairs() -> None:
    assert fastzip.subjects_json([], "sha256") == b""
    assert fastzip.subjects_json((("a", "00"),), "sha256") == b'{"digest":{"sha256":"00"},"name":"a"}'
    for bad in ([("a",)], [("a", "b", "c")], [["a", "b"]], [("a", b"00")], [(1, "00")], [None]):
        assert fastzip.subjects_json(bad, "sha256") is None
    with pytest.raises(TypeError):
        fastzip.subjects_json(42, "sha256")
    with pytest.raises(TypeError):
        fastzip.subjects_json([], b"sha256")


def test_scanned_entries_are_left_out_of_the_cyclic_collector() -> None:
    data = zipfile_archive({f"m{i}.py": b"x" * i for i in range(20)})
    got = fastzip.scan(data, BOUNDS, ZipEntry)
    assert got is not None
    assert not any(gc.is_tracked(e) for e in got[0])

    class Loose(tuple):  # a tuple subclass with a __dict__ could be made part of a cycle: it stays tracked
        pass

    loose = fastzip.scan(data, BOUNDS, Loose)
    assert loose is not None
    assert all(gc.is_tracked(e) for e in loose[0])
