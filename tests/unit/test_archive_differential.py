"""Every hand-built hostile archive of the review, through signery *and* every real reader.

The assertion of the canonical-archive rule (docs/formats/archives.md): whenever signery says *valid*, zipfile,
unzip, bsdtar (seeking and piped), 7-Zip and Go's archive/zip all list exactly what signery hashed. For the
attacks, the test also shows which readers the same bytes fool, so a refusal is known to stop a real attack
rather than an imagined one; the set of fooled readers is asserted where the review established it.
"""

from __future__ import annotations

import gzip
import stat
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from archive_readers import ReaderFailed, assert_all_agree, read_all, signery_listing
from signery.archive import ZipArchive
from signery.errors import SigneryError
from support import require_tool
from zipcraft import E, build

BASE = [E(b"manifest.yaml", data=b"name: demo\nversion: 1.0.0\n", method=8), E(b"main.py", data=b"print('signed')\n")]


def _plain() -> bytes:
    return build(BASE)


def _second_directory_in_comment() -> bytes:
    data = bytearray(build(BASE))
    pos = data.rindex(b"PK\x05\x06")
    content, name = b"import os; os.system('id')\n", b"main.py"
    start = len(data)
    crc = zlib.crc32(content)
    lfh = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(content), len(content), len(name), 0)
    cdh = struct.pack(
        "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, len(content), len(content), len(name),
        0, 0, 0, 0, 0, start,
    )  # fmt: skip
    local = lfh + name + content
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cdh + name), start + len(local), 0)
    evil = local + cdh + name + eocd + b"\x00"
    struct.pack_into("<H", data, pos + 20, len(evil))
    return bytes(data) + evil


def _local_sentinel_truncates() -> bytes:
    content = b"print('signed')\n" * 8
    return build([BASE[0], E(b"main.py", data=content, local_usize=0xFFFFFFFF, local_crc=0)])


def _xl_symlink() -> bytes:
    # libarchive's 'xl' extra: a file-type/mode field that turns the regular file into something else.
    xl = b"xl" + struct.pack("<HB", 5, 0x01) + struct.pack("<I", (stat.S_IFLNK | 0o777) << 16)
    return build([BASE[0], E(b"main.py", cd_extra=xl)])


def _dos_directory_bit() -> bytes:
    return build([BASE[0], E(b"main.py", made_by=20, mode=0, dos_attr=0x10)])


def _cp437_name() -> bytes:
    return build([BASE[0], E("caf\u00e9.py".encode("cp437"))])


def _world_writable_setuid() -> bytes:
    return build([BASE[0], E(b"main.py", mode=stat.S_IFREG | 0o6777)])


def _hidden_zip64_locator() -> bytes:
    eocd64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, 0, 0)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1)
    return build([BASE[0], E(b"main.py", comment=eocd64 + locator)])


def _reserved_deflate_symbol() -> bytes:
    stream = bytes.fromhex("737474741c0300")  # "AAAA" + length symbol 286 (distance 1): zlib refuses it
    return build([BASE[0], E(b"main.py", data=b"A" * 262, method=8, body=stream)])


def _bidi_name() -> bytes:
    return build([BASE[0], E("evil\u202eyp.txt".encode(), flags=0x800)])


# name -> (builder, readers the review found fooled by it: a refusal there stops a real attack)
HOSTILE: dict[str, tuple[Callable[[], bytes], frozenset[str]]] = {
    "1-second-directory-in-comment": (_second_directory_in_comment, frozenset({"zipfile"})),
    "2-zip64-locator-in-entry-comment": (_hidden_zip64_locator, frozenset()),
    "3-local-zip64-sentinel": (_local_sentinel_truncates, frozenset()),
    "4-xl-extra-field": (_xl_symlink, frozenset()),
    "5-dos-directory-bit": (_dos_directory_bit, frozenset()),
    "8-reserved-deflate-symbol": (_reserved_deflate_symbol, frozenset()),
    "10-setuid-world-writable": (_world_writable_setuid, frozenset()),
    "13-cp437-name": (_cp437_name, frozenset()),
    "15-bidi-name": (_bidi_name, frozenset()),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_signery_refuses_what_the_readers_read_another_way(tmp_path: Path, case: str) -> None:
    builder, fooled = HOSTILE[case]
    path = tmp_path / f"{case}.zip"
    path.write_bytes(builder())
    with pytest.raises(SigneryError):
        signery_listing(path, "zip")
    signed = signery_listing_of(build(BASE), tmp_path)
    results = read_all(path, tmp_path, "zip")
    differs = {name for name, got in results.items() if isinstance(got, ReaderFailed) or got != signed}
    assert fooled <= differs, f"{case}: expected {sorted(fooled)} to read it another way; results: {results}"


def signery_listing_of(data: bytes, tmp_path: Path) -> frozenset[object]:
    path = tmp_path / "reference.zip"
    path.write_bytes(data)
    return signery_listing(path, "zip")  # type: ignore[return-value]


def _go_style() -> bytes:
    # What Go's archive/zip writes (the Dify CLI): FAT "made by", no attributes, deflate with data descriptors.
    out = []
    for e in BASE:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = c.compress(e.data) + c.flush()
        desc = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(e.data), len(body), len(e.data))
        out.append(E(e.name, data=e.data, method=8, flags=0x8, made_by=20, mode=0, descriptor=desc))
    return build(out)


def _python_zipfile() -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.yaml", b"name: demo\n")
        z.writestr("src/", b"")
        z.writestr("src/caf\u00e9.py", b"x = 1\n")
        info = zipfile.ZipInfo("bin/run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        info.create_system = 3
        z.writestr(info, b"#!/bin/sh\necho hi\n")
    return buf.getvalue()


def _allowed_extras_and_zip64_end() -> bytes:
    ut = b"UT\x05\x00\x01\x00\x00\x00\x00"
    ux = b"ux\x0b\x00\x01\x04\xe8\x03\x00\x00\x04\xe8\x03\x00\x00"
    data = build([E(b"a.txt", cd_extra=ut, local_extra=ut + ux), E(b"b/c.txt", method=8, comment=b"a comment")])
    pos = data.rindex(b"PK\x05\x06")
    _, _, _, n, _, cd_size, cd_off, _ = struct.unpack_from("<4sHHHHIIH", data, pos)
    eocd64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_off)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, pos, 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, cd_size, cd_off, 0)
    return data[:pos] + eocd64 + locator + end


def _local_zip64_sizes() -> bytes:
    content = b"hello\n"
    z64 = b"\x01\x00\x10\x00" + struct.pack("<QQ", len(content), len(content))
    return build([E(b"a.txt", data=content, local_usize=0xFFFFFFFF, local_csize=0xFFFFFFFF, local_extra=z64)])


VALID: dict[str, Callable[[], bytes]] = {
    "plain": _plain,
    "go-style-data-descriptors": _go_style,
    "python-zipfile": _python_zipfile,
    "allowed-extras-comment-and-zip64-end": _allowed_extras_and_zip64_end,
    "local-zip64-sizes": _local_zip64_sizes,
}


def test_libarchive_written_zips_are_accepted_and_read_alike(tmp_path: Path) -> None:
    # bsdtar writes deflated entries with a data descriptor, a zero local CRC and the real local size.
    bsdtar = require_tool("bsdtar")
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "main.py").write_bytes(b"print('signed')\n" * 40)
    (tree / "manifest.yaml").write_bytes(b"name: demo\n")
    path = tmp_path / "bsdtar.zip"
    subprocess.run([bsdtar, "--format", "zip", "-cf", str(path), "-C", str(tree), "src", "manifest.yaml"], check=True)
    assert_all_agree(path, tmp_path, "zip", signery_listing(path, "zip"))


@pytest.mark.parametrize("case", sorted(VALID))
def test_what_signery_accepts_every_reader_reads_alike(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.zip"
    path.write_bytes(VALID[case]())
    with ZipArchive.open(path):
        pass  # accepted
    assert_all_agree(path, tmp_path, "zip", signery_listing(path, "zip"))


# -- .tar.gz ------------------------------------------------------------------------------------------------------


def _tar_member(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, 0o755 if data is None else 0o644, 1_700_000_000
    if data is None:
        info.type = tarfile.DIRTYPE
    info.size = len(data or b"")
    return info.tobuf(format=tarfile.USTAR_FORMAT) + (data or b"") + b"\0" * (-len(data or b"") % 512)


def _bundle(*members: bytes) -> bytes:
    return b"".join(members) + b"\0" * 1024


BUNDLE = _bundle(
    _tar_member("com.example.demo/"),
    _tar_member("com.example.demo/plugin.json", b'{"id": "com.example.demo", "version": "1.0.0"}'),
    _tar_member("com.example.demo/server/main.py", b"print('signed')\n"),
)


def test_a_second_gzip_member_is_refused_though_go_gnu_tar_and_bsdtar_read_it(tmp_path: Path) -> None:
    # Item 6: the installer's old reader stopped at the first member; Go (Mattermost), GNU tar and bsdtar go on.
    second = _bundle(_tar_member("com.example.demo/server/evil", kind=tarfile.SYMTYPE, link="/etc/passwd"))
    path = tmp_path / "two.tar.gz"
    path.write_bytes(gzip.compress(BUNDLE[:-1024], mtime=0) + gzip.compress(second, mtime=0))
    with pytest.raises(SigneryError, match="gzip member"):
        signery_listing(path, "tar")
    results = read_all(path, tmp_path, "tar")
    for reader in ("go-tar", "gnutar", "bsdtar"):
        got = results[reader]
        assert not isinstance(got, ReaderFailed) and any(e.name.endswith("/evil") for e in got), (reader, got)


def test_what_signery_accepts_every_tar_reader_reads_alike(tmp_path: Path) -> None:
    path = tmp_path / "plugin.tar.gz"
    path.write_bytes(gzip.compress(BUNDLE, mtime=0))
    assert_all_agree(path, tmp_path, "tar", signery_listing(path, "tar"))
