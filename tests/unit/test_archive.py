"""The strict ZIP reader, attacked with archives crafted byte by byte, and the append-only rewriter."""

from __future__ import annotations

import io
import stat
import struct
import subprocess
import unicodedata
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery.archive import ArchiveLimits, ZipArchive, check_entry_name, is_zip, rewrite_zip
from signery.errors import MalformedError, Reason, SigneryError, TamperedError, UnsafeArchiveError
from support import require_tool
from zipcraft import E, build


def write(tmp_path: Path, data: bytes, name: str = "a.zip") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def refused(tmp_path: Path, data: bytes, *, limits: ArchiveLimits | None = None) -> SigneryError:
    """Open the archive and read every entry; return the error raised."""
    p = write(tmp_path, data)
    with pytest.raises(SigneryError) as info, ZipArchive.open(p, limits=limits or ArchiveLimits()) as z:
        for e in z.files:
            z.read(e, max_size=1 << 30)
    return info.value


def assert_unsafe(tmp_path: Path, data: bytes, subject: str | None = None, **kw: object) -> UnsafeArchiveError:
    err = refused(tmp_path, data, **kw)  # type: ignore[arg-type]
    assert isinstance(err, UnsafeArchiveError), err
    assert err.reason is Reason.UNSAFE_ARCHIVE
    assert err.exit_code == 1
    if subject is not None:
        assert err.subject == subject, (err.subject, err.message)
    return err


def test_handcrafted_honest_archive_opens(tmp_path: Path) -> None:
    data = build([E(b"a.txt"), E(b"dir/", data=b"", mode=stat.S_IFDIR | 0o755), E(b"dir/b.txt", method=8)])
    p = write(tmp_path, data)
    assert zipfile.ZipFile(p).testzip() is None  # the builder itself is honest
    with ZipArchive.open(p) as z:
        assert [e.name for e in z.entries] == ["a.txt", "dir/", "dir/b.txt"]
        assert [e.name for e in z.files] == ["a.txt", "dir/b.txt"]
        assert z.read(z.files[1]) == b"hello\n"
        assert z.get("dir/").is_dir  # type: ignore[union-attr]


# -- names ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "culprit"),
    [
        ([b"a.txt", b"a.txt"], "a.txt"),
        ([b"README.md", b"readme.MD"], "readme.MD"),
        ([b"dir/", b"dir"], "dir"),
        (["caf\u00e9.txt".encode(), unicodedata.normalize("NFD", "caf\u00e9.txt").encode()], None),
        ([b"STRASSE", "stra\u00dfe".encode()], None),
    ],
    ids=["exact", "case", "dir-vs-file-same-name", "nfc-nfd", "casefold-sharp-s"],
)
def test_duplicate_names_are_refused(tmp_path: Path, names: list[bytes], culprit: str | None) -> None:
    entries = [E(n, flags=0x800, data=b"" if n.endswith(b"/") else b"x") for n in names]
    for e in entries:
        if e.name.endswith(b"/"):
            e.mode = stat.S_IFDIR | 0o755
    err = assert_unsafe(tmp_path, build(entries))
    assert "duplicate" in err.message
    if culprit:
        assert err.subject == culprit


@pytest.mark.parametrize(
    "name",
    [
        b"/etc/passwd",
        b"C:/windows/x",
        b"c:evil",
        b"../evil",
        b"a/../../evil",
        b"a/..",
        b"a/./b",
        b"a//b",
        b"a\\..\\evil",
        b"back\\slash",
        b"nul\x00byte",
        b"tab\there",
        b"new\nline",
        b"esc\x1b[31m",
        b"del\x7f",
        b"",
    ],
)
def test_dangerous_names_are_refused(tmp_path: Path, name: bytes) -> None:
    err = assert_unsafe(tmp_path, build([E(name)]))
    assert err.subject  # always names the entry


def test_c1_control_characters_in_utf8_names_are_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E("a\u0085b".encode(), flags=0x800)]))
    with pytest.raises(UnsafeArchiveError):
        check_entry_name("x\u009bcode")


def test_invalid_utf8_name_is_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E(b"\xff\xfe.txt", flags=0x800)]))


def test_overlong_name_is_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E(b"a" * 2000)]))


def test_non_ascii_names_without_the_utf8_flag_are_refused(tmp_path: Path) -> None:
    # unzip and 7-Zip read CP437 (or the locale), bsdtar raw bytes: the same entry lands under different names.
    err = assert_unsafe(tmp_path, build([E(b"caf\x82.txt")]), subject="caf\u00e9.txt")
    assert "UTF-8 flag" in err.message
    with ZipArchive.open(write(tmp_path, build([E("caf\u00e9.txt".encode(), flags=0x800)]), "u.zip")) as z:
        assert z.files[0].name == "caf\u00e9.txt"


def test_file_used_as_directory_is_refused(tmp_path: Path) -> None:
    err = assert_unsafe(tmp_path, build([E(b"a"), E(b"a/b.txt")]), subject="a/b.txt")
    assert "under a file" in err.message
    assert_unsafe(tmp_path, build([E(b"A"), E(b"a/b.txt")]), subject="a/b.txt")  # also case-folded


def test_unicode_path_extra_field_that_renames_the_entry_is_refused(tmp_path: Path) -> None:
    # Info-ZIP's 0x7075 field carries a UTF-8 name that unzip extracts instead of the header's name.
    header = b"good.txt"
    alt = b"evil.txt"
    field_ = struct.pack("<HHBI", 0x7075, 5 + len(alt), 1, zlib.crc32(header)) + alt
    data = build([E(header, cd_extra=field_, local_extra=field_)])
    unzip = require_tool("unzip")
    p = write(tmp_path, data)
    listing = subprocess.run([unzip, "-Z1", str(p)], capture_output=True, text=True).stdout.split()
    assert listing == ["evil.txt"]  # what an installer using unzip would see
    assert_unsafe(tmp_path, data, subject="good.txt")


# -- links, special files, encryption, compression ----------------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    [stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o644, stat.S_IFBLK | 0o644, stat.S_IFIFO | 0o644, stat.S_IFSOCK | 0o644],
    ids=["symlink", "chardev", "blockdev", "fifo", "socket"],
)
def test_links_and_special_files_are_refused(tmp_path: Path, mode: int) -> None:
    assert_unsafe(tmp_path, build([E(b"x", data=b"/etc/passwd", mode=mode)]), subject="x")


@pytest.mark.parametrize("host", [19, 0, 11], ids=["macos", "fat-with-unix-mode", "ntfs-with-unix-mode"])
def test_symlink_is_refused_whatever_host_system_claims_it(tmp_path: Path, host: int) -> None:
    # Go's archive/zip reads Unix modes from macOS-made entries; 7-Zip and unzip read them on other hosts too.
    data = build([E(b"link", data=b"/etc/passwd", made_by=(host << 8) | 20, mode=stat.S_IFLNK | 0o777)])
    assert_unsafe(tmp_path, data, subject="link")


def test_directory_mode_on_a_file_name_is_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E(b"f", data=b"", mode=stat.S_IFDIR | 0o755)]), subject="f")


def test_directory_with_content_is_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E(b"d/", data=b"payload", mode=stat.S_IFDIR | 0o755)]), subject="d/")


@pytest.mark.parametrize("flag", [0x1, 0x40, 0x2000], ids=["traditional", "strong", "masked-headers"])
def test_encrypted_entries_are_refused(tmp_path: Path, flag: int) -> None:
    err = assert_unsafe(tmp_path, build([E(b"secret.txt", flags=flag)]), subject="secret.txt")
    assert "encrypted" in err.message


def test_unknown_compression_method_is_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E(b"x.bz2", method=12)]), subject="x.bz2")


# -- local header vs central directory ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"local_name": b"b.txt"},
        {"local_name": b"A.txt"},
        {"local_method": 8},
        {"local_flags": 0x800},
        {"local_crc": 1},
        {"local_usize": 99},
        {"header_offset": 1},
    ],
    ids=["name", "name-case", "method", "flags", "crc", "size", "offset"],
)
def test_local_header_disagreeing_with_central_directory_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    e = E(b"a.txt")
    for k, v in change.items():
        setattr(e, k, v)
    assert_unsafe(tmp_path, build([e]), subject="a.txt")


def test_data_descriptor_is_accepted_when_it_agrees(tmp_path: Path) -> None:
    data = b"hello\n"
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    for desc in (
        struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), len(body), len(data)),
        struct.pack("<III", zlib.crc32(data), len(body), len(data)),
    ):
        p = write(tmp_path, build([E(b"a.txt", method=8, flags=0x8, descriptor=desc), E(b"b.txt")]))
        with ZipArchive.open(p) as z:
            assert [z.read(e) for e in z.files] == [data, data]


def test_stored_entry_with_a_data_descriptor_is_refused(tmp_path: Path) -> None:
    # A streaming reader finds the end of stored data by searching for the descriptor, which data may contain.
    data = b"hello\n"
    desc = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), len(data), len(data))
    err = assert_unsafe(tmp_path, build([E(b"a.txt", flags=0x8, descriptor=desc)]), subject="a.txt")
    assert "data descriptor" in err.message


def test_data_descriptor_disagreeing_is_refused(tmp_path: Path) -> None:
    data = b"hello\n"
    desc = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data) ^ 1, len(data), len(data))
    err = assert_unsafe(tmp_path, build([E(b"a.txt", flags=0x8, descriptor=desc)]), subject="a.txt")
    assert "descriptor" in err.message


def test_real_zipfile_streamed_archive_with_descriptors_opens(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            with zf.open(f"f{i}.txt", "w") as fh:  # streaming write: sizes go in a data descriptor
                fh.write(b"stream %d\n" % i * 50)
    nonseek = write(tmp_path, buf.getvalue())
    with ZipArchive.open(nonseek) as z:
        assert [z.read(e) for e in z.files] == [b"stream %d\n" % i * 50 for i in range(3)]


# -- layout: overlap, prefix, suffix, gaps ------------------------------------------------------------------------


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    # Two central records pointing at the same local header: classic "overlapping file" bomb shape.
    honest = build([E(b"a.txt")])
    second = E(b"b.txt", header_offset=0)
    second_cd = build([E(b"a.txt"), second])
    assert honest  # builder sanity
    err = assert_unsafe(tmp_path, second_cd)
    assert err.subject in ("a.txt", "b.txt")


def test_central_records_sharing_one_local_header_are_refused(tmp_path: Path) -> None:
    a = E(b"a.txt")
    blob = bytearray(build([a]))
    # Append a second central record (same name bytes at offset 0 would clash; use another name) -> name mismatch
    # or overlap, never acceptance.
    cd_off = struct.unpack_from("<I", blob, len(blob) - 6)[0]
    cd = bytes(blob[cd_off:-22])
    rec2 = bytearray(cd)
    rec2[46:51] = b"a.txu"
    new = bytes(blob[:cd_off]) + cd + bytes(rec2)
    new += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 2, 2, len(cd) * 2, cd_off, 0)
    assert_unsafe(tmp_path, new)


def test_prepended_bytes_are_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, build([E(b"a.txt")], prefix=b"#!/bin/sh\nexit 0\n"))
    assert isinstance(err, UnsafeArchiveError)


def test_prepended_bytes_with_adjusted_offsets_are_refused(tmp_path: Path) -> None:
    # A self-extractor shape: the offsets are consistent, but bytes before the first entry are unaccounted for.
    assert_unsafe(tmp_path, build([E(b"a.txt", gap_before=b"MZ" + b"\0" * 62)]), subject="a.txt")


def test_gap_between_entries_is_refused(tmp_path: Path) -> None:
    err = assert_unsafe(tmp_path, build([E(b"a.txt"), E(b"b.txt", gap_before=b"hidden")]), subject="b.txt")
    assert "unaccounted" in err.message


def test_gap_before_central_directory_is_refused(tmp_path: Path) -> None:
    err = assert_unsafe(tmp_path, build([E(b"a.txt")], cd_gap=b"hidden payload"))
    assert "unaccounted" in err.message


def test_appended_bytes_after_end_record_are_refused_as_unsafe(tmp_path: Path) -> None:
    err = refused(tmp_path, build([E(b"a.txt")], suffix=b"trailing garbage"))
    assert isinstance(err, UnsafeArchiveError), err
    assert err.reason is Reason.UNSAFE_ARCHIVE


def test_archive_comment_is_allowed_and_kept(tmp_path: Path) -> None:
    with ZipArchive.open(write(tmp_path, build([E(b"a.txt")], comment=b"hi there, PK"))) as z:
        assert z.comment == b"hi there, PK"


@pytest.mark.parametrize(
    "record", [b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x07\x08"]
)
def test_record_signatures_in_comments_are_refused(tmp_path: Path, record: bytes) -> None:
    # Lenient readers search the tail for structure: a record signature in a comment is structure to them.
    err = assert_unsafe(tmp_path, build([E(b"a.txt")], comment=b"hi " + record + b" there"))
    assert "record signature" in err.message or "end-of-central-directory" in err.message
    err = assert_unsafe(tmp_path, build([E(b"a.txt", comment=b"x" + record)]), subject="a.txt")
    assert "record signature" in err.message


def test_multi_disk_archive_is_refused(tmp_path: Path) -> None:
    err = assert_unsafe(tmp_path, build([E(b"a.txt")], disk=1))
    assert "multi-disk" in err.message


def test_more_central_records_than_declared_is_refused(tmp_path: Path) -> None:
    assert_unsafe(tmp_path, build([E(b"a.txt"), E(b"b.txt")], count=1))


def test_fewer_central_records_than_declared_is_malformed(tmp_path: Path) -> None:
    err = refused(tmp_path, build([E(b"a.txt")], count=2))
    assert isinstance(err, MalformedError)


@pytest.mark.parametrize("data", [b"", b"PK", b"not a zip at all" * 10, b"PK\x03\x04" + b"\0" * 40])
def test_not_a_zip_is_malformed(tmp_path: Path, data: bytes) -> None:
    err = refused(tmp_path, data)
    assert isinstance(err, MalformedError) and err.exit_code == 2


# -- limits and bombs --------------------------------------------------------------------------------------------


def test_entry_count_limit(tmp_path: Path) -> None:
    entries = [E(f"f{i}".encode()) for i in range(6)]
    err = assert_unsafe(tmp_path, build(entries), limits=ArchiveLimits(max_entries=5))
    assert "limit is 5" in err.message
    with ZipArchive.open(write(tmp_path, build(entries)), limits=ArchiveLimits(max_entries=6)) as z:
        assert len(z.files) == 6


def test_total_size_limit(tmp_path: Path) -> None:
    entries = [E(f"f{i}".encode(), data=b"x" * 400) for i in range(3)]
    assert_unsafe(tmp_path, build(entries), subject="f2", limits=ArchiveLimits(max_total_size=1000))


def test_entry_size_limit(tmp_path: Path) -> None:
    assert_unsafe(
        tmp_path, build([E(b"big", data=b"x" * 2000)]), subject="big", limits=ArchiveLimits(max_entry_size=1000)
    )


def test_compression_ratio_bomb_is_refused(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_ratio=10, ratio_floor=1000)
    bomb = E(b"bomb.bin", data=b"\0" * 200_000, method=8)
    err = assert_unsafe(tmp_path, build([bomb]), subject="bomb.bin", limits=limits)
    assert "ratio" in err.message


def test_size_lie_decompressing_beyond_declared_size_is_tampered(tmp_path: Path) -> None:
    # Declares 100 bytes (under every limit) but inflates to 200,000.
    lie = E(b"liar.bin", data=b"\0" * 200_000, method=8, usize=100)
    err = refused(tmp_path, build([lie]))
    assert isinstance(err, TamperedError) and err.subject == "liar.bin"
    assert "more bytes" in err.message


def test_size_lie_shorter_than_declared_is_tampered(tmp_path: Path) -> None:
    err = refused(tmp_path, build([E(b"short.bin", data=b"abc", method=8, usize=10)]))
    assert isinstance(err, TamperedError) and err.subject == "short.bin"


@pytest.mark.parametrize("method", [0, 8])
def test_crc_mismatch_is_tampered_and_names_the_entry(tmp_path: Path, method: int) -> None:
    err = refused(tmp_path, build([E(b"ok.txt"), E(b"bad.txt", method=method, crc=0x12345678)]))
    assert isinstance(err, TamperedError) and err.reason is Reason.TAMPERED
    assert err.subject == "bad.txt"


def test_corrupt_deflate_stream_is_tampered(tmp_path: Path) -> None:
    data = bytearray(build([E(b"x.txt", data=b"abcdef" * 100, method=8)]))
    data[30 + 5] ^= 0xFF  # first byte of the deflate stream
    err = refused(tmp_path, bytes(data))
    assert isinstance(err, TamperedError | UnsafeArchiveError) and err.subject == "x.txt"


def test_bytes_after_deflate_stream_end_are_refused(tmp_path: Path) -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(b"abc") + c.flush() + b"HIDDEN"
    err = refused(tmp_path, build([E(b"x.txt", data=b"abc", method=8, body=body)]))
    assert isinstance(err, UnsafeArchiveError) and err.subject == "x.txt"


# -- real archives -----------------------------------------------------------------------------------------------


def test_real_dify_vectors_open_cleanly(vectors: Path) -> None:
    pkgs = sorted((vectors / "dify").glob("*.difypkg"))
    assert pkgs
    for p in pkgs:
        assert is_zip(p)
        with ZipArchive.open(p) as z, zipfile.ZipFile(p) as ref:
            assert [e.name for e in z.entries] == [i.filename for i in ref.infolist()]
            for e in z.files:
                assert z.read(e, max_size=1 << 30) == ref.read(e.name)


def _zipfile_archive(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("d/"), b"")
        for i, (name, data) in enumerate(entries.items()):
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    return buf.getvalue()


SAMPLE = _zipfile_archive({f"d/f{i}.txt": (b"line %d\n" % i) * (i * 40 + 1) for i in range(5)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, len(SAMPLE) - 1), value=st.integers(1, 255), cut=st.booleans())
def test_random_flips_and_truncations_only_raise_signery_errors(
    tmp_path: Path, pos: int, value: int, cut: bool
) -> None:
    data = SAMPLE[:pos] if cut else SAMPLE[:pos] + bytes([SAMPLE[pos] ^ value]) + SAMPLE[pos + 1 :]
    p = write(tmp_path, data, "fuzz.zip")
    try:
        with ZipArchive.open(p) as z:
            for e in z.files:
                z.read(e)
    except SigneryError:
        pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8})?\.txt", fullmatch=True),
        st.binary(max_size=3000),
        min_size=1,
        max_size=6,
    ),
    drop_last=st.booleans(),
)
def test_rewrite_zip_round_trips(tmp_path: Path, files: dict[str, bytes], drop_last: bool) -> None:
    unzip = require_tool("unzip")
    names = sorted(files, key=str.lower)
    # keep the test archive itself valid for the strict reader (no file/dir clashes, no case duplicates)
    folded: dict[str, str] = {}
    for n in names:
        folded.setdefault(n.lower(), n)
    keep = {n: files[n] for n in folded.values()}
    src = write(tmp_path, _zipfile_archive({f"d/{n}": d for n, d in keep.items()}), "src.zip")
    out = tmp_path / "out.zip"
    with ZipArchive.open(src) as z:
        original = {e.name: z.read(e) for e in z.entries}
        raw_records = {e.name: (bytes(z.raw_bytes(e.header_offset, e.end_offset)), e.cd_record) for e in z.entries}
        drop = [z.entries[-1].name] if drop_last else []
        with out.open("wb") as fh:
            rewrite_zip(z, fh, drop=drop, add=[(".signery/signatures.json", b"{}\n")])
    with ZipArchive.open(out) as z2:
        got = {e.name: z2.read(e) for e in z2.entries}
        for e in z2.entries:
            if e.name in raw_records:
                assert bytes(z2.raw_bytes(e.header_offset, e.end_offset)) == raw_records[e.name][0]
    expected = {k: v for k, v in original.items() if k not in drop}
    expected[".signery/signatures.json"] = b"{}\n"
    assert got == expected
    assert list(got) == [*(n for n in original if n not in drop), ".signery/signatures.json"]
    assert subprocess.run([unzip, "-tq", str(out)], capture_output=True).returncode == 0


def test_rewrite_zip_rebuilds_when_dropping_an_entry_in_the_middle(tmp_path: Path) -> None:
    unzip = require_tool("unzip")
    src = write(tmp_path, _zipfile_archive({"a.txt": b"A" * 100, "b.txt": b"B" * 100, "c.txt": b"C"}))
    out = tmp_path / "out.zip"
    with ZipArchive.open(src) as z, out.open("wb") as fh:
        rewrite_zip(z, fh, drop=["b.txt"], add=[("new.txt", b"N")])
    with ZipArchive.open(out) as z2:
        assert {e.name: z2.read(e) for e in z2.files} == {"a.txt": b"A" * 100, "c.txt": b"C", "new.txt": b"N"}
    assert subprocess.run([unzip, "-tq", str(out)], capture_output=True).returncode == 0


def test_rewrite_zip_refuses_unsafe_or_existing_names(tmp_path: Path) -> None:
    src = write(tmp_path, _zipfile_archive({"a.txt": b"A"}))
    with ZipArchive.open(src) as z:
        for bad in ("../x", "a.txt"):
            with pytest.raises(UnsafeArchiveError):
                rewrite_zip(z, io.BytesIO(), add=[(bad, b"")])
