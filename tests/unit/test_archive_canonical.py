"""The canonical-archive rule (docs/formats/archives.md), one hostile archive per finding of the review.

Each test builds the attack on a package a trusted key signed, changing only bytes no signature covers, and
shows that signery refuses it with ``unsafe-archive`` and names the rule. Where Python's ``zipfile`` is fooled by
the same bytes, the test shows that too, so the attack is known to be real; the differential tests against every
other reader (unzip, bsdtar, 7-Zip, Go) are in tests/unit/test_archive_differential.py.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from signery.archive import ZipArchive
from signery.errors import MalformedError, Reason, UnsafeArchiveError
from signery.formats import native
from signery.keys import FileSigner, generate_private_key
from signery.trust import TrustSet, trusted_key_from_public
from zipcraft import E, build

FILES = {"manifest.yaml": b"name: demo\nversion: 1.0.0\n", "main.py": b"print('signed')\n"}


@pytest.fixture(scope="module")
def signer() -> FileSigner:
    return FileSigner(generate_private_key("ed25519"), name="alice")


@pytest.fixture(scope="module")
def trust(signer: FileSigner) -> TrustSet:
    return TrustSet([trusted_key_from_public(signer.public_key(), name="alice")])


def signed_package(tmp_path: Path, signer: FileSigner, files: dict[str, bytes] = FILES) -> Path:
    src = tmp_path / "plugin.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return native.sign(src, signer)


def refused(path: Path, trust: TrustSet, *, contains: str, subject: str | None = None) -> None:
    with pytest.raises(UnsafeArchiveError) as err:
        native.verify(path, trust=trust)
    assert err.value.reason is Reason.UNSAFE_ARCHIVE
    assert contains in err.value.message, err.value.message
    if subject is not None:
        assert err.value.subject == subject


def eocd_at(data: bytes) -> int:
    return data.rindex(b"PK\x05\x06")


# -- 1. a second central directory in the archive comment --------------------------------------------------------


def fake_directory(start: int, name: bytes, content: bytes) -> bytes:
    """[local header][central directory][end record] for one stored entry, laid out from offset ``start``."""
    crc = zlib.crc32(content)
    lfh = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(content), len(content), len(name), 0)
    cdh = struct.pack(
        "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, len(content), len(content), len(name),
        0, 0, 0, 0, 0, start,
    )  # fmt: skip
    local = lfh + name + content
    cd = cdh + name
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), start + len(local), 0)
    return local + cd + eocd


def test_a_second_directory_hidden_in_the_comment_is_refused(
    tmp_path: Path, signer: FileSigner, trust: TrustSet
) -> None:
    signed = signed_package(tmp_path, signer)
    data = bytearray(signed.read_bytes())
    assert native.verify(signed, trust=trust).verified
    pos = eocd_at(bytes(data))
    evil = fake_directory(len(data), b"main.py", b"import os; os.system('id')\n") + b"\x00"  # one byte past its end
    struct.pack_into("<H", data, pos + 20, len(evil))  # the real end record's comment now covers the fake one
    signed.write_bytes(bytes(data) + evil)
    with zipfile.ZipFile(signed) as z:  # the attack is real: zipfile reads the fake directory
        assert z.read("main.py") == b"import os; os.system('id')\n"
    refused(signed, trust, contains="does not run to the end")


def test_record_signatures_in_the_comment_are_refused_even_when_the_end_record_is_last(
    tmp_path: Path, signer: FileSigner, trust: TrustSet
) -> None:
    signed = signed_package(tmp_path, signer)
    data = bytearray(signed.read_bytes())
    pos = eocd_at(bytes(data))
    tail = b"PK\x01\x02" + bytes(42) + b"PK\x03\x04"
    struct.pack_into("<H", data, pos + 20, len(tail))
    signed.write_bytes(bytes(data) + tail)
    refused(signed, trust, contains="record signature")


def test_signing_never_carries_an_archive_comment_into_the_signed_package(tmp_path: Path, signer: FileSigner) -> None:
    src = tmp_path / "plugin.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.comment = b"built by hand"
        z.writestr("main.py", b"x = 1\n")
    with ZipArchive.open(native.sign(src, signer)) as z:
        assert z.comment == b""


def test_sign_refuses_what_verify_refuses(tmp_path: Path, signer: FileSigner) -> None:
    src = tmp_path / "plugin.zip"
    src.write_bytes(build([E(b"main.py", cd_extra=b"xl\x00\x00")]))
    with pytest.raises(UnsafeArchiveError, match="0x6c78"):
        native.sign(src, signer)
    assert not (tmp_path / "plugin.signed.zip").exists()


# -- 2. a ZIP64 locator hidden in the last central-directory record's comment -----------------------------------


def test_a_zip64_locator_hidden_in_an_entry_comment_is_refused(tmp_path: Path) -> None:
    # zipfile and libarchive honour a locator right before the end record whether or not a field needs it.
    eocd64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, 0, 0)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1)
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"a.txt"), E(b"b.txt", comment=eocd64 + locator)]))
    with pytest.raises(UnsafeArchiveError) as err:
        ZipArchive.open(path).close()
    assert "ZIP64 locator" in err.value.message or "record signature" in err.value.message


def test_a_zip64_locator_before_an_unsaturated_end_record_is_refused(tmp_path: Path) -> None:
    # Go looks for ZIP64 whenever the directory is exactly 0xFFFF bytes: the locator must not be there then.
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1)
    data = build([E(b"a.txt")])
    pos = eocd_at(data)
    (cd_size,) = struct.unpack_from("<I", data, pos + 12)
    patched = bytearray(data[:pos] + locator + data[pos:])
    struct.pack_into("<I", patched, pos + 20 + 12, cd_size + len(locator))  # the locator now ends the directory
    path = tmp_path / "z.zip"
    path.write_bytes(bytes(patched))
    with pytest.raises(UnsafeArchiveError, match="ZIP64 locator precedes"):
        ZipArchive.open(path).close()


def test_zip64_end_record_fields_must_agree_with_the_end_record(tmp_path: Path) -> None:
    data = build([E(b"a.txt")])
    pos = eocd_at(data)
    _, _, _, n, _, cd_size, cd_off, _ = struct.unpack_from("<4sHHHHIIH", data, pos)
    eocd64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_off)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, pos, 1)
    # entry count saturated (so ZIP64 is in use), but the size says something else than the ZIP64 record
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, cd_size + 1, cd_off, 0)
    path = tmp_path / "z.zip"
    path.write_bytes(data[:pos] + eocd64 + locator + end)
    with pytest.raises(UnsafeArchiveError, match="disagrees with the ZIP64 record"):
        ZipArchive.open(path).close()
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, cd_size, cd_off, 0)
    path.write_bytes(data[:pos] + eocd64 + locator + end)
    with ZipArchive.open(path) as z:  # a well-formed ZIP64 end is accepted
        assert [e.name for e in z.files] == ["a.txt"]


# -- 3. the ZIP64 sentinel in a local header ---------------------------------------------------------------------


def test_local_zip64_sentinel_without_local_sizes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"a.txt", local_usize=0xFFFFFFFF, local_crc=0)]))
    with pytest.raises(UnsafeArchiveError, match="local header's ZIP64 sizes are missing"):
        ZipArchive.open(path).close()


def test_local_zip64_sizes_are_compared(tmp_path: Path) -> None:
    data = b"hello\n"
    good = b"\x01\x00\x10\x00" + struct.pack("<QQ", len(data), len(data))
    bad = b"\x01\x00\x10\x00" + struct.pack("<QQ", 3, 3)  # unzip and a piped bsdtar would write 3 bytes
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"a.txt", local_usize=0xFFFFFFFF, local_csize=0xFFFFFFFF, local_extra=good)]))
    with ZipArchive.open(path) as z:
        assert z.read(z.files[0]) == data
    path.write_bytes(build([E(b"a.txt", local_usize=0xFFFFFFFF, local_csize=0xFFFFFFFF, local_extra=bad)]))
    with pytest.raises(UnsafeArchiveError, match="local header sizes or CRC disagree"):
        ZipArchive.open(path).close()


def test_local_crc_is_compared_even_with_the_sentinel(tmp_path: Path) -> None:
    data = b"hello\n"
    z64 = b"\x01\x00\x10\x00" + struct.pack("<QQ", len(data), len(data))
    path = tmp_path / "z.zip"
    path.write_bytes(
        build([E(b"a.txt", local_usize=0xFFFFFFFF, local_csize=0xFFFFFFFF, local_extra=z64, local_crc=1)])
    )
    with pytest.raises(UnsafeArchiveError, match="local header sizes or CRC disagree"):
        ZipArchive.open(path).close()


def test_central_zip64_extra_must_hold_exactly_the_saturated_fields(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"a.txt", cd_extra=b"\x01\x00\x08\x00" + struct.pack("<Q", 6))]))
    with pytest.raises(UnsafeArchiveError, match="ZIP64 extra field holds 8 bytes where 0"):
        ZipArchive.open(path).close()


# -- 4. attribute-carrying extra fields ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["cd_extra", "local_extra"])
@pytest.mark.parametrize(
    "extra",
    [
        b"xl\x04\x00\x00\x00\x00\x00",  # libarchive's 0x6c78: file type and mode
        b"\x0d\x00\x0c\x00" + bytes(12),  # PKWARE Unix 0x000d: may carry a link target
        b"\x17\x00\x00\x00",  # strong encryption header
        b"UT\x01\x00\x00UT\x01\x00\x00",  # the same field twice
        b"UT\x09\x00\x00",  # overruns the block
        b"UT\x00\x00\x00",  # a partial header at the end
    ],
)
def test_extra_fields_off_the_allow_list_or_malformed_are_refused(tmp_path: Path, where: str, extra: bytes) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"a.txt", **{where: extra})]))  # type: ignore[arg-type]
    with pytest.raises(UnsafeArchiveError) as err:
        ZipArchive.open(path).close()
    assert err.value.subject == "a.txt"
    assert "extra field" in err.value.message


def test_allowed_extra_fields_are_accepted(tmp_path: Path) -> None:
    ut = b"UT\x05\x00\x01\x00\x00\x00\x00"
    ux = b"ux\x0b\x00\x01\x04\xe8\x03\x00\x00\x04\xe8\x03\x00\x00"
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"a.txt", cd_extra=ut + ux, local_extra=ux + ut)]))
    with ZipArchive.open(path) as z:
        assert [e.name for e in z.files] == ["a.txt"]


# -- 5. the DOS directory bit on a file ----------------------------------------------------------------------------


@pytest.mark.parametrize("made_by", [20, (10 << 8) | 20, (3 << 8) | 20])
def test_dos_directory_bit_on_a_file_is_refused(tmp_path: Path, made_by: int) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"main.py", made_by=made_by, mode=0, dos_attr=0x10)]))
    with pytest.raises(UnsafeArchiveError, match="DOS directory attribute") as err:
        ZipArchive.open(path).close()
    assert err.value.subject == "main.py"


def test_unix_modes_from_non_unix_hosts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(b"run.sh", made_by=20, mode=stat.S_IFREG | 0o755)]))
    with pytest.raises(UnsafeArchiveError, match="made by host 0"):
        ZipArchive.open(path).close()


# -- 10. permission bits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode", "message"),
    [
        (b"a.py", stat.S_IFREG | 0o4755, "setuid"),
        (b"a.py", stat.S_IFREG | 0o2755, "setuid, setgid"),
        (b"d/", stat.S_IFDIR | 0o1777, "setuid, setgid or sticky"),
        (b"a.py", stat.S_IFREG | 0o666, "world-writable"),
        (b"d/", stat.S_IFDIR | 0o777, "world-writable"),
        (b"a.py", stat.S_IFREG | 0o000, "cannot read"),
        (b"a.py", stat.S_IFREG | 0o6777, "setuid"),
    ],
)
def test_unsafe_permission_bits_are_refused(tmp_path: Path, name: bytes, mode: int, message: str) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(name, mode=mode, data=b"" if name.endswith(b"/") else b"x")]))
    with pytest.raises(UnsafeArchiveError, match=message):
        ZipArchive.open(path).close()


# -- 13. name encoding ---------------------------------------------------------------------------------------------


def test_a_signed_non_ascii_name_re_encoded_as_cp437_is_refused(
    tmp_path: Path, signer: FileSigner, trust: TrustSet
) -> None:
    signed = signed_package(tmp_path, signer, {"caf\u00e9.py": b"x = 1\n"})
    assert native.verify(signed, trust=trust).verified
    data = signed.read_bytes()
    utf8, cp437 = "caf\u00e9.py".encode(), "caf\u00e9.py".encode("cp437")
    assert len(utf8) == len(cp437) + 1  # the CP437 name is a byte shorter: rebuild rather than patch
    with ZipArchive.open(signed) as z:
        entries = [(e.name, z.read(e)) for e in z.entries]
    out = io.BytesIO()
    crafted = [
        E(n.encode("cp437") if n == "caf\u00e9.py" else n.encode(), data=d, flags=0 if n == "caf\u00e9.py" else 0x800)
        for n, d in entries
    ]
    out.write(build(crafted))
    signed.write_bytes(out.getvalue())
    assert data != signed.read_bytes()
    refused(signed, trust, contains="lacks the UTF-8 flag")


# -- 15. names that look or land differently -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "evil\u202eyp.txt",  # right-to-left override: shows as "eviltxt.py"
        "ma\u200bin.py",  # zero-width space
        "\ufeffmain.py",  # byte-order mark
        "a\u00a0b.py",  # no-break space
        "CON",
        "a/NUL.txt",
        "lpt1.log",
        "Aux",
        "com\u00b9.txt",  # Windows treats superscript digits as digits here
        "trailing.",
        "trailing /x.py",
        "name:stream",
        "a/b:c",
        "what?.py",
    ],
)
def test_names_that_land_differently_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(name.encode(), flags=0x800)]))
    with pytest.raises(UnsafeArchiveError):
        ZipArchive.open(path).close()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("main.py", "ma\u0131n.py"),  # dotless i: NTFS's upcase table maps it to I
        ("main.py", "MAIN.PY"),
        ("\u212a.py", "k.py"),  # Kelvin sign
        ("caf\u00e9.py", "cafe\u0301.py"),  # NFC and NFD
        ("\uff41.py", "a.py"),  # fullwidth a
    ],
)
def test_names_that_fold_together_are_refused(tmp_path: Path, first: str, second: str) -> None:
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(first.encode(), flags=0x800), E(second.encode(), flags=0x800)]))
    with pytest.raises(UnsafeArchiveError, match="duplicate entry name"):
        ZipArchive.open(path).close()


def test_ordinary_names_still_pass(tmp_path: Path) -> None:
    names = ["src/main.py", "console.py", "com10.txt", "nul_handler.py", "a.b.c", ".hidden", "_assets/icon.svg"]
    path = tmp_path / "z.zip"
    path.write_bytes(build([E(n.encode()) for n in names]))
    with ZipArchive.open(path) as z:
        assert [e.name for e in z.files] == names


# -- 11. nesting in the documents signery reads ----------------------------------------------------------------


def test_a_deeply_nested_dify_manifest_or_verification_entry_is_malformed_and_named(tmp_path: Path) -> None:
    from signery.formats import dify

    for entry, body in (
        ("manifest.yaml", b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n"),
        (".verification.dify.json", b"[" * 2000 + b"]" * 2000),
    ):
        path = tmp_path / f"{entry}.difypkg"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("main.py", b"x = 1\n")
            z.writestr(entry, body)
        with ZipArchive.open(path) as archive, pytest.raises(MalformedError) as err:
            dify.read_manifest(archive) if entry == "manifest.yaml" else dify.read_category(archive)
        assert err.value.subject == f"{path}:{entry}"
        assert "nested" in err.value.message


# -- 12. the signatures document cannot amplify memory -----------------------------------------------------------


def test_a_signature_entry_larger_than_the_package_can_need_is_refused_before_inflating(
    tmp_path: Path, signer: FileSigner, trust: TrustSet
) -> None:
    signed = signed_package(tmp_path, signer)
    with ZipArchive.open(signed) as z:
        files = [(e.name, z.read(e)) for e in z.files if e.name != native.RESERVED_ENTRY]
        document = z.read(z.get(native.RESERVED_ENTRY))  # type: ignore[arg-type]
    limit = native.document_limit(name for name, _ in files)
    assert len(document) < limit < 1 << 20  # sized to the package: kilobytes, not the old 256 MiB
    padded = document + b" " * (1 << 20) + os.urandom(1 << 20).hex().encode()  # 3 MiB, compressing ~2:1
    bloated = tmp_path / "bloated.zip"
    with zipfile.ZipFile(bloated, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
        z.writestr(native.RESERVED_ENTRY, padded)
    assert bloated.stat().st_size < 2 << 20
    with pytest.raises(MalformedError, match="declares") as err:
        native.verify(bloated, trust=trust)
    assert err.value.subject == native.RESERVED_ENTRY


def test_unknown_members_of_the_signatures_document_are_refused(tmp_path: Path, signer: FileSigner) -> None:
    signed = signed_package(tmp_path, signer)
    with ZipArchive.open(signed) as z:
        doc = json.loads(z.read(z.get(native.RESERVED_ENTRY)))  # type: ignore[arg-type]
    for mutate in (
        lambda d: d.update(extra=1),
        lambda d: d["envelopes"][0].update(cert="x"),
        lambda d: d["envelopes"][0]["signatures"][0].update(note="x"),
    ):
        copy = json.loads(json.dumps(doc))
        mutate(copy)
        with pytest.raises(MalformedError, match=r"unknown members|only 'keyid' and 'sig'"):
            native.SignatureDocument.from_bytes(json.dumps(copy).encode(), source="doc")


# -- 16. Dify: directory entries -----------------------------------------------------------------------------------


def test_a_dify_package_with_a_directory_entry_is_never_valid(tmp_path: Path) -> None:
    from signery.formats import dify

    key = generate_private_key("rsa-3072")
    rsa_signer = FileSigner(key, name="acme")
    src = tmp_path / "plugin.difypkg"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.yaml", b"author: acme\nname: demo\nversion: 0.0.1\n")
        z.writestr("provider/", b"")
        z.writestr("provider/demo.py", b"x = 1\n")
    signed = dify.sign(src, rsa_signer)  # signing drops the directory entry
    trust = TrustSet([trusted_key_from_public(rsa_signer.public_key(), name="acme")])
    assert dify.verify(signed, trust=trust).verified
    with ZipArchive.open(signed) as z:
        assert not any(e.is_dir for e in z.entries)
        entries = [(e.name, z.read(e)) for e in z.entries]
        comment = z.comment
    with_dir = tmp_path / "with-dir.difypkg"  # the same signed entries and signature, plus a directory entry
    with zipfile.ZipFile(with_dir, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("provider/", b"")
        for name, data in entries:
            z.writestr(name, data)
        z.comment = comment
    with pytest.raises(UnsafeArchiveError, match="directory entries") as err:
        dify.verify(with_dir, trust=trust)
    assert err.value.subject == "provider/"
