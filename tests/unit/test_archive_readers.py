"""The reader harness itself: on honest archives every real reader agrees with signery, and disagreement shows.

These archives are benign (Python's zipfile, Info-ZIP's zip when installed, hand-made ones through
:mod:`zipcraft`, tarfile and GNU tar), so any failure here is a bug in the harness or a reader signery must learn
about. The self-tests at the end prove that :func:`assert_all_agree` does fail when a reader sees something else.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from archive_readers import (
    TAR_READERS,
    ZIP_READERS,
    Entry,
    ReaderFailed,
    assert_all_agree,
    listing,
    mode_class,
    read_all,
    read_go_zip,
    signery_listing,
    walk,
)
from support import require_tool
from zipcraft import E, build

FILES: dict[str, tuple[bytes, int]] = {
    "plugin.json": (b'{"id": "demo", "version": "1.0.0"}\n', 0o644),
    "server/main.py": (b"print('hello')\n" * 200, 0o644),
    "bin/run.sh": (b"#!/bin/sh\nexec python3 server/main.py\n", 0o755),
    "assets/img/icon.svg": (b"<svg/>\n", 0o644),
    "docs/caf\u00e9.md": ("# Caf\u00e9\n".encode(), 0o644),
}
EMPTY_DIRS = ("data",)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_listing(
    files: dict[str, tuple[bytes, int]] = FILES, dirs: tuple[str, ...] = EMPTY_DIRS
) -> frozenset[Entry]:
    """What the readers must list for ``files`` and ``dirs``, worked out without any reader."""
    entries = {Entry(n, "file", "x" if mode & 0o111 else "-", sha(data)) for n, (data, mode) in files.items()}
    return frozenset(entries | {Entry(d, "dir", "d", None) for d in dirs})


def python_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, (name, (data, mode)) in enumerate(FILES.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED
            zf.writestr(info, data)
        for d in EMPTY_DIRS:
            zf.mkdir(d, mode=0o755)
    return path


def make_tree(root: Path, files: dict[str, tuple[bytes, int]] = FILES) -> Path:
    for name, (data, mode) in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    for d in EMPTY_DIRS:
        (root / d).mkdir()
    return root


def descriptor(data: bytes, *, signature: bool = True, method: int = 8) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    csize = len(c.compress(data) + c.flush()) if method == 8 else len(data)
    return (b"PK\x07\x08" if signature else b"") + struct.pack("<III", zlib.crc32(data), csize, len(data))


# -- listings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "mode", "expected"),
    [
        ("file", 0o100644, "-"),
        ("file", 0o100755, "x"),
        ("file", 0o100100, "x"),
        ("file", 0, "-"),
        ("file", 0o104755, "xs"),
        ("file", 0o102644, "-s"),
        ("file", 0o101644, "-t"),
        ("file", 0o100666, "-w"),
        ("file", 0o107777, "xstw"),
        ("dir", 0o040755, "d"),
        ("dir", 0o041777, "dtw"),
        ("symlink", 0o120777, "l"),
        ("other", 0o010644, "?"),
    ],
)
def test_mode_class(type_: str, mode: int, expected: str) -> None:
    assert mode_class(type_, mode) == expected


def test_a_listing_keeps_only_directories_with_nothing_beneath() -> None:
    got = listing(
        [
            Entry("./a/", "dir", "d", None),
            Entry("a/b", "dir", "d", None),
            Entry("a/b/c.txt", "file", "-", "00"),
            Entry("a/empty/", "dir", "d", None),
            Entry(".", "dir", "d", None),
            Entry("top", "file", "x", "11"),
        ]
    )
    assert got == {
        Entry("a/b/c.txt", "file", "-", "00"),
        Entry("a/empty", "dir", "d", None),
        Entry("top", "file", "x", "11"),
    }


def test_walk_lists_links_and_special_files_without_following_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"data")
    (root / "empty").mkdir()
    (root / "link").symlink_to("/etc")
    (root / "rel").symlink_to("sub/f")
    os.mkfifo(root / "fifo")
    assert walk(root) == {
        Entry("sub/f", "file", "-", sha(b"data")),
        Entry("empty", "dir", "d", None),
        Entry("link", "symlink", "l", sha(b"/etc")),
        Entry("rel", "symlink", "l", sha(b"sub/f")),
        Entry("fifo", "other", "?", None),
    }


# -- benign ZIPs ------------------------------------------------------------------------------------------------


def test_a_python_zipfile_archive_reads_the_same_everywhere(tmp_path: Path) -> None:
    path = python_zip(tmp_path / "p.zip")
    assert signery_listing(path) == expected_listing()
    assert_all_agree(path, tmp_path, "zip", expected_listing())


def test_an_info_zip_archive_reads_the_same_everywhere(tmp_path: Path) -> None:
    tool = require_tool("zip")
    # ASCII names only: zip 3.0 writes other names as raw bytes without the UTF-8 flag, which signery refuses.
    files = {n: v for n, v in FILES.items() if n.isascii()}
    root = make_tree(tmp_path / "tree", files)
    path = tmp_path / "z.zip"
    subprocess.run([tool, "-q", "-r", str(path), "."], cwd=root, check=True, timeout=60)
    assert signery_listing(path) == expected_listing(files)
    assert_all_agree(path, tmp_path, "zip", expected_listing(files))


def test_a_hand_made_archive_reads_the_same_everywhere(tmp_path: Path) -> None:
    run_sh = FILES["bin/run.sh"][0]
    main_py = FILES["server/main.py"][0]
    icon = FILES["assets/img/icon.svg"][0]
    data = build(
        [
            E(b"plugin.json", data=FILES["plugin.json"][0]),
            E(b"server/main.py", data=main_py, method=8, flags=8, descriptor=descriptor(main_py)),
            E(b"bin/", data=b"", mode=stat.S_IFDIR | 0o755),
            E(
                b"bin/run.sh",
                data=run_sh,
                mode=stat.S_IFREG | 0o755,
                method=8,
                flags=8,
                descriptor=descriptor(run_sh, signature=False),
            ),
            E(b"assets/img/icon.svg", data=icon),
            E("docs/caf\u00e9.md".encode(), data=FILES["docs/caf\u00e9.md"][0], flags=0x800),
            E(b"data/", data=b"", mode=stat.S_IFDIR | 0o755),
        ],
        comment=b"a plain comment",
    )
    path = tmp_path / "craft.zip"
    path.write_bytes(data)
    assert signery_listing(path) == expected_listing()
    assert_all_agree(path, tmp_path, "zip", expected_listing())


def test_every_zip_reader_sees_a_symlink_as_one(tmp_path: Path) -> None:
    """signery refuses links; the harness must still report them the same way from every reader."""
    path = tmp_path / "link.zip"
    path.write_bytes(build([E(b"a.txt", data=b"A"), E(b"link", data=b"a.txt", mode=stat.S_IFLNK | 0o777)]))
    expected = frozenset({Entry("a.txt", "file", "-", sha(b"A")), Entry("link", "symlink", "l", sha(b"a.txt"))})
    assert_all_agree(path, tmp_path, "zip", expected)


# -- benign tar.gz ----------------------------------------------------------------------------------------------


def python_tar(path: Path, fmt: int = tarfile.PAX_FORMAT, files: dict[str, tuple[bytes, int]] = FILES) -> Path:
    with tarfile.open(path, "w:gz", format=fmt) as tf:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
        for d in EMPTY_DIRS:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
    return path


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_a_python_tarfile_bundle_reads_the_same_everywhere(tmp_path: Path, fmt: int) -> None:
    files = dict(FILES)
    if fmt != tarfile.USTAR_FORMAT:  # a long name: a PAX header or a GNU long-name member
        files["server/" + "deep/" * 30 + "module.py"] = (b"x = 1\n", 0o644)
    path = python_tar(tmp_path / "b.tar.gz", fmt, files)
    expected = expected_listing(files)
    assert signery_listing(path) == expected
    assert_all_agree(path, tmp_path, "tar", expected)


def test_a_gnu_tar_bundle_reads_the_same_everywhere(tmp_path: Path) -> None:
    tool = shutil.which("tar")
    assert tool is not None
    root = make_tree(tmp_path / "tree")
    path = tmp_path / "g.tar.gz"
    subprocess.run([tool, "-czf", str(path), "-C", str(root), "."], check=True, timeout=60)
    assert signery_listing(path) == expected_listing()
    assert_all_agree(path, tmp_path, "tar", expected_listing())


def test_every_tar_reader_sees_links_the_same_way(tmp_path: Path) -> None:
    """A symbolic link is a link to its target's path; a hard link is a second file with its target's content."""
    path = tmp_path / "links.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("a.txt")
        info.size, info.mode = 1, 0o644
        tf.addfile(info, io.BytesIO(b"A"))
        for name, kind in (("sym", tarfile.SYMTYPE), ("hard", tarfile.LNKTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, "a.txt", 0o644
            tf.addfile(info)
    expected = frozenset(
        {
            Entry("a.txt", "file", "-", sha(b"A")),
            Entry("hard", "file", "-", sha(b"A")),
            Entry("sym", "symlink", "l", sha(b"a.txt")),
        }
    )
    assert_all_agree(path, tmp_path, "tar", expected)


# -- the harness can fail ---------------------------------------------------------------------------------------


def test_a_bad_crc_makes_the_checking_readers_fail(tmp_path: Path) -> None:
    path = tmp_path / "crc.zip"
    path.write_bytes(build([E(b"a.txt", data=b"hello\n", crc=zlib.crc32(b"hello\n") ^ 1)]))
    results = read_all(path, tmp_path, "zip")
    assert set(results) == set(ZIP_READERS)
    for reader in ("zipfile", "go-zip", "unzip"):
        assert isinstance(results[reader], ReaderFailed), (reader, results[reader])
    assert "CRC" in str(results["zipfile"]).upper()
    with pytest.raises(AssertionError, match=r"zipfile\b.*failed"):
        assert_all_agree(path, tmp_path, "zip", frozenset({Entry("a.txt", "file", "-", sha(b"hello\n"))}))


def test_a_reader_that_warns_is_a_reader_that_disagrees(tmp_path: Path) -> None:
    """Bytes after the end record: 7-Zip says so (and exits 0); that alone must fail the comparison."""
    path = python_zip(tmp_path / "p.zip")
    path.write_bytes(path.read_bytes() + b"trailing bytes")
    results = read_all(path, tmp_path, "zip")
    assert isinstance(results["7z"], ReaderFailed)
    assert results["zipfile"] == expected_listing()
    with pytest.raises(AssertionError, match="7z: failed"):
        assert_all_agree(path, tmp_path, "zip", expected_listing())


def test_a_different_view_of_one_entry_is_shown_per_reader(tmp_path: Path) -> None:
    """Made by OS X with a Unix mode: zipfile and Go apply its execute bits, the extractors do not."""
    path = tmp_path / "osx.zip"
    path.write_bytes(build([E(b"run.sh", data=b"A", made_by=(19 << 8) | 20, mode=stat.S_IFREG | 0o755)]))
    results = read_all(path, tmp_path, "zip")
    plain = frozenset({Entry("run.sh", "file", "-", sha(b"A"))})
    assert results["unzip"] == plain
    assert results["go-zip"] == frozenset({Entry("run.sh", "file", "x", sha(b"A"))})
    with pytest.raises(AssertionError) as err:
        assert_all_agree(path, tmp_path, "zip", plain)
    message = str(err.value)
    assert "zipfile/go-zip: missing 'run.sh' file - " in message and "extra 'run.sh' file x" in message
    assert "unzip" not in message


def test_go_applies_the_umask_like_the_extractors(tmp_path: Path) -> None:
    """Made by MS-DOS with no attributes (as Go writes): Go reports 0666, which an extractor's umask narrows."""
    path = tmp_path / "dos.zip"
    path.write_bytes(build([E(b"a.txt", data=b"A", made_by=20, mode=0)]))
    assert_all_agree(path, tmp_path, "zip", frozenset({Entry("a.txt", "file", "-", sha(b"A"))}))


def test_a_wrong_expectation_fails_for_every_reader(tmp_path: Path) -> None:
    path = python_tar(tmp_path / "b.tar.gz")
    wrong = expected_listing() | {Entry("missing.txt", "file", "-", sha(b""))}
    with pytest.raises(AssertionError) as err:
        assert_all_agree(path, tmp_path, "tar", wrong)
    assert "/".join(TAR_READERS) in str(err.value) and "missing 'missing.txt'" in str(err.value)


def test_a_truncated_bundle_fails_every_tar_reader(tmp_path: Path) -> None:
    path = python_tar(tmp_path / "b.tar.gz")
    path.write_bytes(path.read_bytes()[:-40])
    results = read_all(path, tmp_path, "tar")
    assert all(isinstance(r, ReaderFailed) for r in results.values()), results


def test_golister_reports_errors_as_failures(tmp_path: Path) -> None:
    path = tmp_path / "not.zip"
    path.write_bytes(b"this is not a zip archive at all" * 4)
    with pytest.raises(ReaderFailed) as err:
        read_go_zip(path, tmp_path)
    assert err.value.reader == "go-zip" and "zip" in err.value.message
