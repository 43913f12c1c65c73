"""Mutated copies of a signed plugin ZIP: whenever signery still calls one valid, every real reader must agree.

A small plugin package is built by hand (:mod:`zipcraft`: stored and deflated entries, a subdirectory, an empty
directory, an executable, a data descriptor) and signed with signery's native format. Then its header fields are
changed: the central directory records, local headers, end record, extra fields, comments, attributes, flags,
offsets and sizes, by hypothesis and by a list of targeted attacks (a second central directory hidden in the
comment, a ZIP64 locator hidden in a record comment, local-header ZIP64 sentinels, libarchive's ``xl`` field,
the MS-DOS directory bit, ...). For every mutant that signery verifies:

- every reader of :mod:`archive_readers` must succeed and list exactly what signery lists, and
- signery must list exactly what the original package held (the signature vouches for it).

A mutant that signery refuses (it raises, or verification fails) is fine: nothing was promised about it.

``SIGNERY_MUTATION_EXAMPLES=N`` runs N random examples instead of the fixed, derandomized CI set (and shrinks
what fails); use it to hunt for new disagreements.
"""

from __future__ import annotations

import itertools
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from archive_readers import Entry, assert_all_agree, signery_listing
from signery.errors import SigneryError
from signery.formats import native
from signery.keys import FileSigner
from signery.trust import TrustSet, trusted_key_from_public
from zipcraft import E, build

_EXPLORE = os.environ.get("SIGNERY_MUTATION_EXAMPLES")
MAX_EXAMPLES = int(_EXPLORE) if _EXPLORE else 500  # about 10 s: most mutants are refused in a millisecond

# -- the signed package -------------------------------------------------------------------------------------------

MAIN_PY = b"".join(b"def handler_%d(event):\n    return {'ok': True, 'n': %d}\n\n" % (i, i) for i in range(40))
RUN_SH = b'#!/bin/sh\nexec python3 server/main.py "$@"\n' * 4
PLUGIN_JSON = b'{"id": "demo", "version": "1.0.0", "server": {"executable": "bin/run.sh"}}\n'
ICON = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n'


def _descriptor(data: bytes, method: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    csize = len(c.compress(data) + c.flush()) if method == 8 else len(data)
    return struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(data), csize, len(data))


def _package() -> bytes:
    return build(
        [
            E(b"plugin.json", data=PLUGIN_JSON),
            E(b"server/main.py", data=MAIN_PY, method=8),
            E(
                b"bin/run.sh",
                data=RUN_SH,
                method=8,
                flags=8,
                mode=stat.S_IFREG | 0o755,
                descriptor=_descriptor(RUN_SH, 8),
            ),
            E(b"assets/", data=b"", mode=stat.S_IFDIR | 0o755),
            E(b"assets/icon.svg", data=ICON),
            E(b"data/", data=b"", mode=stat.S_IFDIR | 0o755),
        ]
    )


@dataclass(frozen=True)
class Signed:
    data: bytes
    listing: frozenset[Entry]
    trust: TrustSet
    workdir: Path
    counter: Iterator[int]

    def write(self, data: bytes) -> Path:
        # A new file for every mutant, kept until the module ends: no inode is reused while signery caches parses.
        path = self.workdir / f"mutant-{next(self.counter)}.zip"
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    workdir = tmp_path_factory.mktemp("mutations")
    source = workdir / "plugin.zip"
    source.write_bytes(_package())
    # A fixed key and time: the signed bytes, and so the derandomized examples, are the same in every run.
    signer = FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))), name="mutations")
    out = native.sign(source, signer, now=datetime(2024, 1, 1, tzinfo=UTC))
    trust = TrustSet([trusted_key_from_public(signer.public_key(), name="mutations")])
    assert native.verify(out, trust=trust).verified
    return Signed(out.read_bytes(), signery_listing(out), trust, workdir, itertools.count())


def signery_accepts(path: Path, trust: TrustSet) -> bool:
    try:
        return native.verify(path, trust=trust).verified
    except SigneryError:
        return False


def without_exec(entries: frozenset[Entry]) -> frozenset[Entry]:
    return frozenset(
        e._replace(mode_class=e.mode_class.replace("x", "-", 1)) if e.type == "file" else e for e in entries
    )


def check_mutant(signed: Signed, data: bytes, tmp: Path) -> bool:
    """If signery verifies ``data``, hold it to its promise. Returns whether signery accepted it."""
    path = signed.write(data)
    if not signery_accepts(path, signed.trust):
        return False
    listed = signery_listing(path)
    assert_all_agree(path, tmp, "zip", listed)
    # Every reader must agree on the execute bit (above), but it is not signed: a ZIP's modes are not covered by
    # the native signature, and signery's installer ignores them (docs/formats/archives.md, "The exec bit").
    assert without_exec(listed) == without_exec(signed.listing), (
        "signery verifies a mutant whose listing differs from the signed package's: "
        f"lost {sorted(e.brief() for e in signed.listing - listed)}, "
        f"gained {sorted(e.brief() for e in listed - signed.listing)}"
    )
    return True


# -- a ZIP, field by field ----------------------------------------------------------------------------------------

LFH = (
    ("sig", 4), ("version", 2), ("flags", 2), ("method", 2), ("mtime", 2), ("mdate", 2), ("crc", 4), ("csize", 4),
    ("usize", 4), ("name_len", 2), ("extra_len", 2),
)  # fmt: skip
CDH = (
    ("sig", 4), ("made_by", 2), ("version", 2), ("flags", 2), ("method", 2), ("mtime", 2), ("mdate", 2), ("crc", 4),
    ("csize", 4), ("usize", 4), ("name_len", 2), ("extra_len", 2), ("comment_len", 2), ("disk_start", 2),
    ("int_attr", 2), ("ext_attr", 4), ("offset", 4),
)  # fmt: skip
EOCD = (
    ("sig", 4), ("disk", 2), ("cd_disk", 2), ("n_disk", 2), ("n_total", 2), ("cd_size", 4), ("cd_offset", 4),
    ("comment_len", 2),
)  # fmt: skip
_WIDTH = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _offsets(layout: tuple[tuple[str, int], ...]) -> dict[str, tuple[int, int]]:
    out, pos = {}, 0
    for name, size in layout:
        out[name] = (pos, size)
        pos += size
    return out


_LFH_AT, _CDH_AT, _EOCD_AT = _offsets(LFH), _offsets(CDH), _offsets(EOCD)
_LAYOUTS = {"local": _LFH_AT, "cd": _CDH_AT, "eocd": _EOCD_AT}


def get(header: bytearray | bytes, layout: dict[str, tuple[int, int]], name: str) -> int:
    off, size = layout[name]
    return int(struct.unpack_from("<" + _WIDTH[size], header, off)[0])


def put(header: bytearray, layout: dict[str, tuple[int, int]], name: str, value: int) -> None:
    off, size = layout[name]
    struct.pack_into("<" + _WIDTH[size], header, off, value & ((1 << (8 * size)) - 1))


@dataclass
class Local:
    header: bytearray  # the 30 fixed bytes
    name: bytes
    extra: bytes
    rest: bytes  # data and descriptor: everything up to the next local header or the central directory
    before: bytes = b""  # bytes inserted in front of this local header


@dataclass
class Record:
    header: bytearray  # the 46 fixed bytes
    name: bytes
    extra: bytes
    comment: bytes
    target: int  # index of the local header this record points at


@dataclass
class Model:
    """A ZIP as parts. :meth:`serialise` recomputes every length, offset and count from the parts."""

    locals: list[Local]
    records: list[Record]
    eocd: bytearray
    gap: bytes = b""  # between the last entry and the central directory
    comment: bytes = b""
    suffix: bytes = b""  # after the end record's comment (not counted by its length)

    @classmethod
    def parse(cls, data: bytes) -> Model:
        eocd_at = data.rfind(b"PK\x05\x06")
        eocd = bytearray(data[eocd_at : eocd_at + 22])
        comment = data[eocd_at + 22 : eocd_at + 22 + get(eocd, _EOCD_AT, "comment_len")]
        cd_offset, n = get(eocd, _EOCD_AT, "cd_offset"), get(eocd, _EOCD_AT, "n_total")
        raw_records, p = [], cd_offset
        for _ in range(n):
            header = bytearray(data[p : p + 46])
            nl, xl, cl = (get(header, _CDH_AT, k) for k in ("name_len", "extra_len", "comment_len"))
            body = data[p + 46 : p + 46 + nl + xl + cl]
            raw_records.append((header, body[:nl], body[nl : nl + xl], body[nl + xl :]))
            p += 46 + nl + xl + cl
        starts = sorted({get(h, _CDH_AT, "offset") for h, *_ in raw_records})
        locals_ = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else cd_offset
            header = bytearray(data[start : start + 30])
            nl, xl = get(header, _LFH_AT, "name_len"), get(header, _LFH_AT, "extra_len")
            locals_.append(
                Local(header, data[start + 30 : start + 30 + nl], data[start + 30 + nl : start + 30 + nl + xl],
                      data[start + 30 + nl + xl : end])
            )  # fmt: skip
        records = [Record(h, nm, x, c, starts.index(get(h, _CDH_AT, "offset"))) for h, nm, x, c in raw_records]
        return cls(locals_, records, eocd, comment=comment)

    def serialise(self) -> tuple[bytes, Layout]:
        out = bytearray()
        lay = Layout()
        positions = []
        for i, loc in enumerate(self.locals):
            lay.boundaries[f"before local[{i}]"] = len(out)
            out += loc.before
            positions.append(len(out))
            lay.boundaries[f"local[{i}]"] = len(out)
            h = bytearray(loc.header)
            put(h, _LFH_AT, "name_len", len(loc.name))
            put(h, _LFH_AT, "extra_len", len(loc.extra))
            lay.add_header(f"local[{i}]", "local", len(out))
            out += h
            lay.regions[f"local[{i}].name"] = (len(out), len(loc.name))
            out += loc.name
            lay.regions[f"local[{i}].extra"] = (len(out), len(loc.extra))
            out += loc.extra
            lay.boundaries[f"data[{i}]"] = len(out)
            lay.regions[f"data[{i}]"] = (len(out), len(loc.rest))
            out += loc.rest
        lay.boundaries["gap"] = len(out)
        out += self.gap
        cd_offset = len(out)
        lay.boundaries["cd"] = cd_offset
        for i, rec in enumerate(self.records):
            lay.boundaries[f"cd[{i}]"] = len(out)
            h = bytearray(rec.header)
            put(h, _CDH_AT, "name_len", len(rec.name))
            put(h, _CDH_AT, "extra_len", len(rec.extra))
            put(h, _CDH_AT, "comment_len", len(rec.comment))
            put(h, _CDH_AT, "offset", positions[rec.target])
            lay.add_header(f"cd[{i}]", "cd", len(out))
            out += h
            for part in ("name", "extra", "comment"):
                value = getattr(rec, part)
                lay.regions[f"cd[{i}].{part}"] = (len(out), len(value))
                out += value
        cd_size = len(out) - cd_offset
        e = bytearray(self.eocd)
        put(e, _EOCD_AT, "n_disk", len(self.records))
        put(e, _EOCD_AT, "n_total", len(self.records))
        put(e, _EOCD_AT, "cd_size", cd_size)
        put(e, _EOCD_AT, "cd_offset", cd_offset)
        put(e, _EOCD_AT, "comment_len", len(self.comment))
        lay.boundaries["eocd"] = len(out)
        lay.add_header("eocd", "eocd", len(out))
        out += e
        lay.regions["comment"] = (len(out), len(self.comment))
        lay.boundaries["comment"] = len(out)
        out += self.comment
        lay.boundaries["end"] = len(out)
        out += self.suffix
        return bytes(out), lay


@dataclass
class Layout:
    """Where every header field, variable region and boundary of a serialised :class:`Model` lies."""

    fields: dict[str, tuple[int, int]] = field(default_factory=dict)  # "cd[1].ext_attr" -> (offset, size)
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # "local[0].extra" -> (offset, length)
    boundaries: dict[str, int] = field(default_factory=dict)  # "cd" -> offset

    def add_header(self, prefix: str, kind: str, at: int) -> None:
        for name, (off, size) in _LAYOUTS[kind].items():
            self.fields[f"{prefix}.{name}"] = (at + off, size)


def set_field(data: bytearray, lay: Layout, name: str, value: int) -> None:
    off, size = lay.fields[name]
    struct.pack_into("<" + _WIDTH[size], data, off, value & ((1 << (8 * size)) - 1))


def field_value(data: bytes | bytearray, lay: Layout, name: str) -> int:
    off, size = lay.fields[name]
    return int(struct.unpack_from("<" + _WIDTH[size], data, off)[0])


# -- interesting values -------------------------------------------------------------------------------------------

MODES = (
    0, 0o644, 0o100644, 0o100755, 0o100600, 0o100000, 0o104755, 0o102755, 0o101644, 0o100666, 0o100777, 0o120777,
    0o120644, 0o040755, 0o040777, 0o010644, 0o020644, 0o060644, 0o140644, 0o170644,
)  # fmt: skip
DOS_BITS = (0, 0x01, 0x10, 0x11, 0x20)
HOSTS = (0, 3, 7, 10, 11, 14, 19, 30)  # MS-DOS, Unix, Macintosh, NTFS, VFAT, VM/CMS, OS X, unused
METHODS = (0, 1, 8, 9, 12, 14, 93, 95, 98, 99)
SIGNATURES = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x07\x08")
UNIX_MADE_BY = (3 << 8) | 20
# Fields that no other field repeats: a change to one of them can leave the archive consistent, so they are drawn
# more often than the ones whose every change breaks a cross-check (sizes, CRCs, offsets, signatures).
SOFT_FIELDS = frozenset({"made_by", "version", "flags", "mtime", "mdate", "int_attr", "ext_attr", "disk_start"})
U32 = 0xFFFFFFFF


def ext_attr(mode: int, dos: int = 0) -> int:
    return (mode << 16) | dos


def xl_field(made_by: int | None, attr: int | None) -> bytes:
    """libarchive's experimental ``xl`` extra field: external attributes (and "made by") in a local header."""
    bitmap = (1 if made_by is not None else 0) | (4 if attr is not None else 0)
    body = bytes([bitmap])
    body += struct.pack("<H", made_by) if made_by is not None else b""
    body += struct.pack("<I", attr) if attr is not None else b""
    return extra_field(0x6C78, body)


def extra_field(tag: int, body: bytes) -> bytes:
    return struct.pack("<HH", tag, len(body)) + body


def unicode_path(name: bytes, *, crc_of: bytes | None = None) -> bytes:
    """Info-ZIP's Unicode Path field (0x7075): version 1, the CRC-32 of the header's name, the UTF-8 name."""
    return extra_field(0x7075, b"\x01" + struct.pack("<I", zlib.crc32(crc_of if crc_of is not None else name)) + name)


def zip64_field(*values: int) -> bytes:
    return extra_field(0x0001, b"".join(struct.pack("<Q", v) for v in values))


def values_for(name: str, current: int, size: int) -> st.SearchStrategy[int]:
    top = (1 << (8 * size)) - 1
    common: list[st.SearchStrategy[int]] = [
        st.sampled_from(sorted({0, 1, top, top - 1, (current + 1) & top, (current - 1) & top, 1 << (8 * size - 1)})),
        st.integers(0, top),
        st.integers(0, 8 * size - 1).map(lambda bit: current ^ (1 << bit)),
    ]  # fmt: skip
    field_name = name.rsplit(".", 1)[1]
    if field_name == "ext_attr":
        common.append(st.builds(ext_attr, st.sampled_from(MODES), st.sampled_from(DOS_BITS)))
        common.append(st.sampled_from(DOS_BITS).map(lambda d: current | d))
    elif field_name == "made_by":
        common.append(st.builds(lambda h, v: (h << 8) | v, st.sampled_from(HOSTS), st.sampled_from((10, 20, 45, 63))))
    elif field_name == "version":
        common.append(st.sampled_from((0, 10, 20, 45, 51, 63, (3 << 8) | 20, 0x3F3F)))
    elif field_name == "method":
        common.append(st.sampled_from(METHODS))
    elif field_name == "flags":
        common.append(st.integers(0, 15).map(lambda bit: current ^ (1 << bit)))
    elif field_name in ("csize", "usize", "offset", "cd_offset", "cd_size"):
        common.append(st.integers(-64, 64).map(lambda d: (current + d) & top))
    return st.one_of(common)


# -- mutations ----------------------------------------------------------------------------------------------------


class Mutant:
    """Mutated bytes and the steps that made them (a plain class: hypothesis prints its repr, not the bytes)."""

    def __init__(self, data: bytes, steps: list[str]) -> None:
        self.data = data
        self.steps = steps

    def __repr__(self) -> str:
        return f"Mutant({'; '.join(self.steps)})"


def blobs(model: Model) -> st.SearchStrategy[bytes]:
    """Bytes to insert: random ones, ZIP signatures, and copies of the archive's own records."""
    original, _ = model.serialise()
    eocd_at = original.rfind(b"PK\x05\x06")
    cd_at = get(model.eocd, _EOCD_AT, "cd_offset")
    copies = [original[eocd_at : eocd_at + 22], original[cd_at:eocd_at], original[cd_at : cd_at + 46 + 11]]
    copies += [bytes(loc.header) + loc.name for loc in model.locals]
    return st.one_of(
        st.binary(min_size=1, max_size=40),
        st.sampled_from(SIGNATURES),
        st.builds(lambda s, b: s + b, st.sampled_from(SIGNATURES), st.binary(max_size=60)),
        st.sampled_from(copies),
    )


def extras(model: Model, index: int) -> st.SearchStrategy[bytes]:
    loc = model.locals[index]
    usize, csize = get(loc.header, _LFH_AT, "usize"), get(loc.header, _LFH_AT, "csize")
    return st.one_of(
        st.builds(xl_field, st.sampled_from((None, UNIX_MADE_BY, 20)), st.builds(ext_attr, st.sampled_from(MODES))),
        st.builds(zip64_field, st.sampled_from((usize, 0, 1, usize + 1)), st.sampled_from((csize, 0, csize + 7))),
        st.builds(zip64_field, st.integers(0, 1 << 40)),
        st.sampled_from(
            (
                unicode_path(loc.name),
                unicode_path(b"evil.sh", crc_of=loc.name),
                unicode_path(loc.name.upper(), crc_of=loc.name),
                extra_field(0x5455, b"\x01" + struct.pack("<I", 1700000000)),
                extra_field(0x7875, b"\x01\x04" + struct.pack("<I", 0) + b"\x04" + struct.pack("<I", 0)),
                extra_field(0x000A, bytes(32)),
                extra_field(0x9901, b"\x02\x00AE\x03\x08\x00"),  # WinZip AES: "encrypted"
            )
        ),
        st.builds(extra_field, st.integers(0, 0xFFFF), st.binary(max_size=24)),
        st.binary(min_size=1, max_size=7),  # not even a well-formed extra field
    )


@st.composite
def mutants(draw: st.DrawFn, base: bytes) -> Mutant:
    model = Model.parse(base)
    steps: list[str] = []
    n_local, n_cd = len(model.locals), len(model.records)
    # First, at most one structural change; every length, offset and count is then recomputed for it.
    kind = draw(st.sampled_from(("none", "extra", "comment", "record-comment", "junk")))
    if kind == "extra":
        where = draw(st.sampled_from(("local", "cd")))
        i = draw(st.integers(0, n_local - 1 if where == "local" else n_cd - 1))
        target = model.locals[i] if where == "local" else model.records[i]
        blob = draw(extras(model, i if where == "local" else model.records[i].target))
        target.extra = target.extra + blob if draw(st.booleans()) else blob + target.extra
        steps.append(f"{where}[{i}] extra += {blob!r}")
    elif kind == "comment":
        model.comment = draw(blobs(model))
        steps.append(f"archive comment = {model.comment!r}")
    elif kind == "record-comment":
        i = draw(st.integers(0, n_cd - 1))
        model.records[i].comment = draw(blobs(model))
        steps.append(f"cd[{i}] comment = {model.records[i].comment!r}")
    elif kind == "junk":
        spot = draw(st.sampled_from([*(f"before local[{i}]" for i in range(n_local)), "gap"]))
        junk = draw(blobs(model))
        if spot == "gap":
            model.gap = junk
        else:
            model.locals[int(spot.split("[")[1].rstrip("]"))].before = junk
        steps.append(f"insert {junk!r} {spot} (offsets fixed)")
    data, lay = model.serialise()
    buf = bytearray(data)
    # Then raw changes to the bytes, nothing recomputed.
    n_raw = draw(st.integers(1 if kind == "none" else 0, 2))
    inserts: list[tuple[int, bytes, str]] = []
    for _ in range(n_raw):
        how = draw(st.sampled_from(("field", "field", "field", "byte", "insert", "append")))
        if how == "field":
            soft = sorted(k for k in lay.fields if k.rsplit(".", 1)[1] in SOFT_FIELDS)
            name = draw(st.one_of(st.sampled_from(soft), st.sampled_from(sorted(lay.fields))))
            current = field_value(buf, lay, name)
            value = draw(values_for(name, current, lay.fields[name][1]))
            set_field(buf, lay, name, value)
            steps.append(f"{name}: {current:#x} -> {value:#x}")
        elif how == "byte":
            regions = sorted(k for k, (_, n) in lay.regions.items() if n)
            region = draw(st.sampled_from(regions))
            off, n = lay.regions[region]
            i = draw(st.integers(0, n - 1))
            value = draw(st.integers(0, 255))
            steps.append(f"{region}[{i}]: {buf[off + i]:#x} -> {value:#x}")
            buf[off + i] = value
        elif how == "insert":
            spot = draw(st.sampled_from(sorted(lay.boundaries)))
            blob = draw(blobs(model))
            inserts.append((lay.boundaries[spot], blob, f"insert {blob!r} at {spot} (offsets not fixed)"))
        else:
            blob = draw(blobs(model))
            inserts.append((len(buf), blob, f"append {blob!r}"))
    for at, blob, what in sorted(inserts, key=lambda t: -t[0]):  # from the end, so earlier offsets still hold
        buf[at:at] = blob
        steps.append(what)
    return Mutant(bytes(buf), steps)


# -- targeted attacks ---------------------------------------------------------------------------------------------


def _model(signed: Signed) -> Model:
    return Model.parse(signed.data)


def _index(model: Model, name: bytes) -> int:
    return next(i for i, r in enumerate(model.records) if r.name == name)


def _raw(signed: Signed, edit: Callable[[bytearray, Layout, Model], None]) -> bytes:
    model = _model(signed)
    data, lay = model.serialise()
    buf = bytearray(data)
    edit(buf, lay, model)
    return bytes(buf)


def _structural(signed: Signed, edit: Callable[[Model], None]) -> bytes:
    model = _model(signed)
    edit(model)
    return model.serialise()[0]


def _local_entry(name: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data)
    return (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(name), 0)
        + name
        + data
    )


def _record(name: bytes, data: bytes, offset: int, mode: int = 0o100644) -> bytes:
    return (
        struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", UNIX_MADE_BY, 20, 0, 0, 0, 0x21, zlib.crc32(data),
                    len(data), len(data), len(name), 0, 0, 0, 0, mode << 16, offset)
        + name
    )  # fmt: skip


def _shadow(signed: Signed, *, comment_slack: int) -> bytes:
    """A second archive in the end record's comment: its own plugin.json and a central directory that uses it.

    Its end record claims a comment ``comment_slack`` bytes longer than what follows it, so a reader that insists
    the comment run to the end of the file skips it, and one that takes the last end record it finds reads it.
    """
    model = _model(signed)
    assert model.records[0].name == b"plugin.json"
    model.comment = b""
    data, lay = model.serialise()
    base = lay.regions["comment"][0]
    evil = b'{"id": "demo", "server": {"executable": "bin/evil.sh"}}\n'
    hidden = _local_entry(b"plugin.json", evil)
    cd = data[lay.boundaries["cd"] : lay.boundaries["eocd"]]
    others = cd[lay.boundaries["cd[1]"] - lay.boundaries["cd"] :]
    shadow_cd = _record(b"plugin.json", evil, base) + others  # the real records, plugin.json's swapped
    n = len(model.records)
    cd_at = base + len(hidden)
    fake_eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(shadow_cd), cd_at, comment_slack)
    comment = hidden + shadow_cd + fake_eocd
    model.comment = comment
    return model.serialise()[0]


def _zip64_in_record_comment(signed: Signed) -> bytes:
    """A ZIP64 end record and locator hidden in the last record's comment, right before the real end record.

    zipfile (and others) look for a ZIP64 locator in front of every end record, whatever its fields say; this
    one leads to a central directory, also in that comment, that swaps plugin.json for another one.
    """
    model = _model(signed)
    assert model.records[0].name == b"plugin.json"
    evil = b'{"id": "demo", "server": {"executable": "bin/evil.sh"}}\n'
    hidden = _local_entry(b"plugin.json", evil)
    n = len(model.records)
    data, lay = model.serialise()
    # The shadow directory: plugin.json's record swapped, the others copied (the last one without its comment).
    middle = data[lay.boundaries["cd[1]"] : lay.boundaries[f"cd[{n - 1}]"]]
    last = model.records[-1]
    last_header = bytearray(last.header)
    put(last_header, _CDH_AT, "comment_len", 0)
    put(last_header, _CDH_AT, "offset", field_value(data, lay, f"cd[{n - 1}].offset"))
    tail = bytes(last_header) + last.name + last.extra
    shadow_len = len(_record(b"plugin.json", evil, 0)) + len(middle) + len(tail)
    model.records[-1].comment = bytes(len(hidden) + shadow_len + 56 + 20)  # placeholder: fixes every position
    data, lay = model.serialise()
    comment_at = lay.regions[f"cd[{n - 1}].comment"][0]
    shadow = _record(b"plugin.json", evil, comment_at) + middle + tail
    shadow_at = comment_at + len(hidden)
    eocd64_at = shadow_at + len(shadow)
    eocd64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(shadow), shadow_at)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64_at, 1)
    model.records[-1].comment = hidden + shadow + eocd64 + locator
    return model.serialise()[0]


def _set(name: str, value: int | Callable[[int], int]) -> Callable[[bytearray, Layout, Model], None]:
    def edit(buf: bytearray, lay: Layout, model: Model) -> None:
        set_field(buf, lay, name, value(field_value(buf, lay, name)) if callable(value) else value)

    return edit


def _sets(*edits: Callable[[bytearray, Layout, Model], None]) -> Callable[[bytearray, Layout, Model], None]:
    def edit(buf: bytearray, lay: Layout, model: Model) -> None:
        for e in edits:
            e(buf, lay, model)

    return edit


def _add_extra(where: str, index: int, blob: bytes) -> Callable[[Model], None]:
    def edit(model: Model) -> None:
        target = model.locals[index] if where == "local" else model.records[index]
        target.extra += blob

    return edit


def _targets(signed: Signed) -> dict[str, bytes]:
    """Named attacks on the signed package; indices follow its layout (see :func:`_package`)."""
    m = _model(signed)
    js, main, run = (_index(m, n) for n in (b"plugin.json", b"server/main.py", b"bin/run.sh"))
    js_l, main_l, run_l = (m.records[i].target for i in (js, main, run))
    main_sizes = (get(m.locals[main_l].header, _LFH_AT, "usize"), get(m.locals[main_l].header, _LFH_AT, "csize"))
    js_size = get(m.locals[js_l].header, _LFH_AT, "usize")

    def raw(*edits: Callable[[bytearray, Layout, Model], None]) -> bytes:
        return _raw(signed, _sets(*edits))

    def structural(edit: Callable[[Model], None]) -> bytes:
        return _structural(signed, edit)

    def local_zip64(index: int, values: tuple[int, int]) -> Callable[[Model], None]:
        def edit(md: Model) -> None:
            loc = md.locals[index]
            put(loc.header, _LFH_AT, "usize", U32)
            put(loc.header, _LFH_AT, "csize", U32)
            loc.extra += zip64_field(*values)

        return edit

    def attr(value: int) -> Callable[[int], int]:
        return lambda current: current | value

    t: dict[str, bytes] = {}
    # A second central directory in the archive comment.
    t["comment-shadow-cd-skipped-by-strict-readers"] = _shadow(signed, comment_slack=7)
    t["comment-shadow-cd-ending-at-eof"] = _shadow(signed, comment_slack=0)
    t["comment-with-signatures"] = structural(lambda md: setattr(md, "comment", b"PK\x05\x06" + bytes(18) + b"PK"))
    t["comment-eocd-copy"] = structural(lambda md: setattr(md, "comment", bytes(md.eocd)))
    # A ZIP64 locator hidden before the end record.
    t["zip64-locator-in-record-comment"] = _zip64_in_record_comment(signed)
    # Local-header ZIP64 sentinels (the central directory has the true sizes).
    t["local-sizes-sentinel"] = raw(_set(f"local[{js_l}].csize", U32), _set(f"local[{js_l}].usize", U32))
    t["local-csize-sentinel-deflated"] = raw(_set(f"local[{main_l}].csize", U32))
    t["local-zip64-extra-true-sizes"] = structural(local_zip64(main_l, main_sizes))
    t["local-zip64-extra-short-sizes"] = structural(local_zip64(main_l, (main_sizes[0] // 2, main_sizes[1] // 2)))
    t["local-zip64-extra-stored-truncated"] = structural(local_zip64(js_l, (js_size - 10, js_size - 10)))
    # libarchive's 'xl' field: external attributes in the local header, which its streaming reader trusts.
    for label, mode in (("symlink", 0o120777), ("exec", 0o100755), ("setuid", 0o104755), ("dir", 0o040755)):
        t[f"local-xl-{label}"] = structural(_add_extra("local", js_l, xl_field(UNIX_MADE_BY, ext_attr(mode))))
    t["cd-xl-symlink"] = structural(_add_extra("cd", js, xl_field(UNIX_MADE_BY, ext_attr(0o120777))))
    t["local-xl-dos-dir"] = structural(_add_extra("local", js_l, xl_field(20, 0x10)))
    # Host systems and the MS-DOS attribute byte.
    dos = 20  # made by MS-DOS, version 2.0
    t["dos-host-dir-bit"] = raw(_set(f"cd[{js}].made_by", dos), _set(f"cd[{js}].ext_attr", attr(0x10)))
    t["unix-host-dir-bit"] = raw(_set(f"cd[{js}].ext_attr", attr(0x10)))
    t["dos-host-readonly"] = raw(_set(f"cd[{js}].made_by", dos), _set(f"cd[{js}].ext_attr", attr(0x01)))
    t["dos-host-unix-exec-mode"] = raw(_set(f"cd[{run}].made_by", dos))
    for host in (7, 10, 11, 19):
        t[f"host-{host}-unix-mode"] = raw(_set(f"cd[{run}].made_by", (host << 8) | 20))
    # Unix modes, which the signature does not cover.
    for label, mode in (
        ("exec", 0o100755), ("no-exec", 0o100644), ("setuid", 0o104755), ("setgid", 0o102755), ("sticky", 0o101644),
        ("world-writable", 0o100666), ("no-perms", 0o100000), ("type-less", 0o755), ("fifo", 0o010644),
        ("symlink", 0o120777), ("dir", 0o040755), ("socket", 0o140644),
    ):  # fmt: skip
        t[f"mode-{label}"] = raw(_set(f"cd[{run if label == 'no-exec' else js}].ext_attr", ext_attr(mode)))
    t["dir-mode-world-writable"] = raw(_set(f"cd[{_index(m, b'data/')}].ext_attr", ext_attr(0o040777)))
    # Flags.
    t["cd-descriptor-flag-only"] = raw(_set(f"cd[{js}].flags", attr(0x8)))
    t["local-descriptor-flag-only"] = raw(_set(f"local[{js_l}].flags", attr(0x8)))
    t["descriptor-entry-loses-flag"] = raw(
        _set(f"cd[{run}].flags", lambda v: v & ~0x8), _set(f"local[{run_l}].flags", lambda v: v & ~0x8)
    )
    t["cd-descriptor-flag-cleared"] = raw(_set(f"cd[{run}].flags", lambda v: v & ~0x8))
    t["utf8-flag-on"] = raw(_set(f"cd[{js}].flags", attr(0x800)), _set(f"local[{js_l}].flags", attr(0x800)))
    t["utf8-flag-cd-only"] = raw(_set(f"cd[{js}].flags", attr(0x800)))
    # Unicode Path fields.
    t["unicode-path-same-name-cd"] = structural(_add_extra("cd", js, unicode_path(b"plugin.json")))
    t["unicode-path-other-name-local"] = structural(
        _add_extra("local", js_l, unicode_path(b"evil.json", crc_of=b"plugin.json"))
    )
    # Other fields readers may or may not care about.
    t["unicode-path-same-name-local"] = structural(_add_extra("local", js_l, unicode_path(b"plugin.json")))
    t["disk-start-1"] = raw(_set(f"cd[{js}].disk_start", 1))
    t["int-attr-text"] = raw(_set(f"cd[{main}].int_attr", 1))
    t["int-attr-0x4-on-executable"] = raw(_set(f"cd[{run}].int_attr", 4))
    t["first-local-invalid-date"] = raw(_set("local[0].mdate", 0x20))  # 1980-01-00
    t["cd-version-needed-51"] = raw(_set(f"cd[{js}].version", 51))
    t["cd-version-needed-84"] = raw(_set(f"cd[{js}].version", 84))
    t["version-needed-63"] = raw(_set(f"cd[{js}].version", 63), _set(f"local[{js_l}].version", 63))
    t["local-version-unix-host"] = raw(_set(f"local[{js_l}].version", UNIX_MADE_BY))
    t["eocd-disk-counts-differ"] = raw(_set("eocd.n_disk", len(m.records) - 1))
    t["eocd-count-short"] = raw(_set("eocd.n_disk", len(m.records) - 1), _set("eocd.n_total", len(m.records) - 1))
    t["cd-extra-unknown-tag"] = structural(_add_extra("cd", js, extra_field(0xCAFE, b"")))
    t["local-extra-timestamp"] = structural(_add_extra("local", js_l, extra_field(0x5455, b"\x01" + bytes(4))))
    t["local-extra-malformed"] = structural(_add_extra("local", js_l, b"\x01\x02\x03"))
    t["local-extra-aes"] = structural(_add_extra("local", js_l, extra_field(0x9901, b"\x02\x00AE\x03\x08\x00")))
    t["record-comment-with-lfh"] = structural(lambda md: setattr(md.records[js], "comment", b"PK\x03\x04" + bytes(26)))
    # Bytes where there should be none (offsets fixed, so only the strict layout checks can object).
    t["prefix-bytes"] = structural(lambda md: setattr(md.locals[0], "before", b"MZ" + bytes(30)))
    t["gap-before-cd"] = structural(lambda md: setattr(md, "gap", b"PK\x03\x04" + bytes(40)))
    t["between-entries"] = structural(lambda md: setattr(md.locals[1], "before", bytes(16)))
    t["appended-bytes"] = signed.data + b"trailing"
    return t


# The names of the attacks :func:`_targets` builds (collected before any package exists; checked to match).
TARGET_NAMES = (
    "comment-shadow-cd-skipped-by-strict-readers",
    "comment-shadow-cd-ending-at-eof",
    "comment-with-signatures",
    "comment-eocd-copy",
    "zip64-locator-in-record-comment",
    "local-sizes-sentinel",
    "local-csize-sentinel-deflated",
    "local-zip64-extra-true-sizes",
    "local-zip64-extra-short-sizes",
    "local-zip64-extra-stored-truncated",
    "local-xl-symlink",
    "local-xl-exec",
    "local-xl-setuid",
    "local-xl-dir",
    "cd-xl-symlink",
    "local-xl-dos-dir",
    "dos-host-dir-bit",
    "unix-host-dir-bit",
    "dos-host-readonly",
    "dos-host-unix-exec-mode",
    "host-7-unix-mode",
    "host-10-unix-mode",
    "host-11-unix-mode",
    "host-19-unix-mode",
    "mode-exec",
    "mode-no-exec",
    "mode-setuid",
    "mode-setgid",
    "mode-sticky",
    "mode-world-writable",
    "mode-no-perms",
    "mode-type-less",
    "mode-fifo",
    "mode-symlink",
    "mode-dir",
    "mode-socket",
    "dir-mode-world-writable",
    "cd-descriptor-flag-only",
    "local-descriptor-flag-only",
    "descriptor-entry-loses-flag",
    "cd-descriptor-flag-cleared",
    "utf8-flag-on",
    "utf8-flag-cd-only",
    "unicode-path-same-name-cd",
    "unicode-path-same-name-local",
    "unicode-path-other-name-local",
    "disk-start-1",
    "int-attr-text",
    "int-attr-0x4-on-executable",
    "first-local-invalid-date",
    "cd-version-needed-51",
    "cd-version-needed-84",
    "version-needed-63",
    "local-version-unix-host",
    "eocd-disk-counts-differ",
    "eocd-count-short",
    "cd-extra-unknown-tag",
    "local-extra-timestamp",
    "local-extra-malformed",
    "local-extra-aes",
    "record-comment-with-lfh",
    "prefix-bytes",
    "gap-before-cd",
    "between-entries",
    "appended-bytes",
)


@pytest.fixture(scope="module")
def targets(signed: Signed) -> dict[str, bytes]:
    built = _targets(signed)
    assert sorted(built) == sorted(TARGET_NAMES)
    return built


# -- the tests ----------------------------------------------------------------------------------------------------


def test_the_model_round_trips_the_signed_package(signed: Signed) -> None:
    data, lay = Model.parse(signed.data).serialise()
    assert data == signed.data
    assert field_value(data, lay, "eocd.n_total") == 7  # six package entries and the signature
    assert {e.name for e in signed.listing} >= {"plugin.json", "server/main.py", "bin/run.sh", "data"}


def test_the_signed_package_reads_the_same_everywhere(signed: Signed, tmp_path: Path) -> None:
    path = signed.write(signed.data)
    assert signery_accepts(path, signed.trust)
    assert_all_agree(path, tmp_path, "zip", signed.listing)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_targeted_mutation(signed: Signed, targets: dict[str, bytes], tmp_path: Path, name: str) -> None:
    check_mutant(signed, targets[name], tmp_path)


def _mutation_settings() -> settings:
    # In CI nothing is shrunk: every shrinking step runs six readers, and a mutant's steps are short anyway.
    phases = [Phase.explicit, Phase.generate] + ([Phase.reuse, Phase.shrink] if _EXPLORE else [])
    return settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=not _EXPLORE,
        phases=phases,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@_mutation_settings()
@given(data=st.data())
def test_mutated_signed_package(signed: Signed, tmp_path: Path, data: st.DataObject) -> None:
    mutant = data.draw(mutants(signed.data), label="mutant")
    check_mutant(signed, mutant.data, tmp_path)


def test_the_oracle_is_not_vacuous(signed: Signed) -> None:
    """A harmless change (a timestamp) still verifies, and a real one (a CRC-32) does not."""
    data, lay = Model.parse(signed.data).serialise()
    harmless = bytearray(data)
    set_field(harmless, lay, "cd[0].mtime", 0x1234)
    broken = bytearray(data)
    set_field(broken, lay, "cd[0].crc", field_value(broken, lay, "cd[0].crc") ^ 1)
    assert [signery_accepts(signed.write(bytes(b)), signed.trust) for b in (harmless, broken)] == [True, False]
