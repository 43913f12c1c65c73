"""Fuzz the ZIP reader: the pure-Python reference, the C accelerator against it, and what reads packages through it.

For every input (written to a file and memory-mapped, as :meth:`ZipArchive.open` reads packages):

1. the reference ``archive._parse`` judges it; it either returns or raises ``SigneryError``;
2. the accelerator's ``_fastzip.scan`` must return ``None`` or exactly the reference's result: it may never accept
   what the reference refuses;
3. ``ZipArchive.open`` (accelerator first, reference as fallback) must reach the reference's verdict and entries;
4. on an accepted archive, ``_fastzip.digest`` (whole list, and with a small ``max_entry``) must give the reference
   ``hash_entry`` digests, or the index of the first entry the reference refuses too; ``hash_files`` and
   ``hex_digests`` must give the same digests or raise the reference's error;
5. a copy rewritten as native and Dify signing do (``rewrite_zip``) must read back with the kept entries unchanged;
6. the readers on top (detection, native and Dify signatures and verification, the package manifest the installer
   and the registry read, registry metadata) must only ever succeed or refuse.

Limits are small (64 entries, 256 KiB per entry, 1 MiB in all) so that bombs cost nothing.

Which accelerator: the installed ``signery._fastzip``, or the build at ``$SIGNERY_FUZZ_FASTZIP`` (``fuzz/run`` builds
one with libdeflate and one with zlib, under AddressSanitizer and UBSan, and runs this target once with each).

    .venv/bin/python fuzz/fuzz_zip.py -max_total_time=60 CORPUS_DIR     # fuzz
    .venv/bin/python fuzz/fuzz_zip.py crash-file                          # reproduce one input
"""

from __future__ import annotations

import io
import mmap
import os

import _harness
import atheris

_harness.use_accelerator_from_env()

with atheris.instrument_imports(include=["signery"]):
    from signery import archive, package
    from signery.archive import ArchiveLimits, ZipArchive, ZipEntry, rewrite_zip
    from signery.formats import detect_formats, dify, native
    from signery.registry import metadata
    from signery.trust import TrustSet, trusted_key_from_public

FAST = archive._fastzip
LIMITS = ArchiveLimits(
    max_entries=64, max_total_size=1 << 20, max_entry_size=256 << 10, max_ratio=100, ratio_floor=4096
)
# A rewritten copy holds one more entry (the signature document) than the original may.
REWRITE_LIMITS = ArchiveLimits(
    max_entries=LIMITS.max_entries + 1, max_total_size=2 * LIMITS.max_total_size, max_entry_size=LIMITS.max_entry_size
)
SMALL_ENTRY = 64  # a max_entry for digest(): larger entries are left to the streaming reader (None)
TRUST = TrustSet(
    [
        trusted_key_from_public(_harness.ed25519_key().public_key(), name="fuzz-ed25519"),
        trusted_key_from_public(_harness.rsa_key().public_key(), name="fuzz-rsa"),
    ]
)
SCRATCH = _harness.scratch()
PATH = SCRATCH / "input.zip"


def check_scan(mm: mmap.mmap, ref: tuple[list[ZipEntry], bytes, int] | None, ref_err: BaseException | None) -> None:
    fast = archive._scan(mm, LIMITS)  # what ZipArchive.open asks the accelerator (limits clamped as it does)
    if fast is None:
        return
    if ref is None:
        raise _harness.Disagreement(f"_fastzip.scan accepted an archive the reference refuses: {ref_err!r}")
    entries, comment, cd_offset = fast
    ref_entries, ref_comment, ref_cd = ref
    if (comment, cd_offset) != (ref_comment, ref_cd):
        raise _harness.Disagreement(f"scan: comment/cd_offset {(comment, cd_offset)!r} != {(ref_comment, ref_cd)!r}")
    if len(entries) != len(ref_entries):
        raise _harness.Disagreement(f"scan listed {len(entries)} entries, the reference {len(ref_entries)}")
    for got, want in zip(entries, ref_entries, strict=True):
        if type(got) is not ZipEntry:
            raise _harness.Disagreement(f"scan built a {type(got).__name__}, not a ZipEntry")
        for field in ZipEntry._fields:
            if getattr(got, field) != getattr(want, field):
                raise _harness.Disagreement(
                    f"scan: entry {want.name!r} {field} = {getattr(got, field)!r}, reference {getattr(want, field)!r}"
                )


def reference_digests(z: ZipArchive, files: list[ZipEntry], alg: str) -> list[bytes | BaseException]:
    out: list[bytes | BaseException] = []
    for e in files:
        digests, err = _harness.refused(z.hash_entry, e, [alg])
        out.append(digests[alg] if digests is not None else err)  # type: ignore[arg-type]
    return out


def check_fast_digests(z: ZipArchive, files: list[ZipEntry], alg: str, expected: list[bytes | BaseException]) -> None:
    for max_entry in (None, SMALL_ENTRY):
        args = (z._map, files, alg, 2) if max_entry is None else (z._map, files, alg, 2, False, max_entry)
        got = FAST.digest(*args)
        skipped = [max_entry is not None and (e.compressed_size >= max_entry or e.size >= max_entry) for e in files]
        if isinstance(got, int):
            if not 0 <= got < len(files) or skipped[got]:
                raise _harness.Disagreement(f"digest(max_entry={max_entry}) failed at impossible index {got}")
            if isinstance(expected[got], bytes):
                raise _harness.Disagreement(
                    f"digest(max_entry={max_entry}) refused entry {files[got].name!r}, which the reference reads"
                )
            first_bad = next(i for i, d in enumerate(expected) if not isinstance(d, bytes) and not skipped[i])
            if got != first_bad:
                raise _harness.Disagreement(f"digest reported entry {got}, the first bad one is {first_bad}")
            continue
        if len(got) != len(files):
            raise _harness.Disagreement(f"digest returned {len(got)} digests for {len(files)} entries")
        for e, d, want, skip in zip(files, got, expected, skipped, strict=True):
            if skip:
                if d is not None:
                    raise _harness.Disagreement(f"digest hashed {e.name!r}, which max_entry={max_entry} leaves out")
            elif d != want:
                raise _harness.Disagreement(
                    f"digest(max_entry={max_entry}) of {e.name!r} is {d!r}; the reference says {want!r}"
                )


def check_hash_files(z: ZipArchive, files: list[ZipEntry], alg: str, expected: list[bytes | BaseException]) -> None:
    first_error = next((d for d in expected if not isinstance(d, bytes)), None)
    listing, err = _harness.refused(z.hash_files, [alg])
    if first_error is not None:
        if not _harness.same_error(err, first_error):
            raise _harness.Disagreement(f"hash_files gave {listing or err!r}; the reference refuses: {first_error!r}")
    elif listing != [(e, {alg: d}) for e, d in zip(files, expected, strict=True)]:
        raise _harness.Disagreement(f"hash_files disagrees with hash_entry: {err!r}")
    hexes, err = _harness.refused(z.hex_digests, alg)
    if first_error is not None:
        if not _harness.same_error(err, first_error):
            raise _harness.Disagreement(f"hex_digests gave {hexes or err!r}; the reference refuses: {first_error!r}")
    elif hexes != [(e.name, d.hex()) for e, d in zip(files, expected, strict=True)]:  # type: ignore[union-attr]
        raise _harness.Disagreement(f"hex_digests disagrees with hash_entry: {err!r}")


def check_rewrite(z: ZipArchive) -> None:
    """Signing rewrites the archive (native: the signature entry replaced or added; Dify: directories and the
    verification entry dropped, a new one added, the comment replaced). The copy must read back, with the kept
    entries unchanged: otherwise `signery sign` writes a package that `signery verify` refuses."""
    native_doc = b'{"envelopes":[],"mediaType":"application/vnd.signery.signatures.v1+json"}\n'
    dify_drop = [e.name for e in z.entries if e.is_dir or e.name == dify.VERIFICATION_ENTRY]
    for how, drop, add, comment in (
        ("native", [native.RESERVED_ENTRY], (native.RESERVED_ENTRY, native_doc), None),
        ("dify", dify_drop, (dify.VERIFICATION_ENTRY, dify.verification_entry("partner")), b'{"signature":"AA=="}'),
    ):
        out = io.BytesIO()
        _, err = _harness.refused(rewrite_zip, z, out, drop=drop, add=[add], comment=comment)
        if err is not None:
            continue
        data = out.getvalue()
        parsed, err = _harness.refused(archive._parse, data, len(data), REWRITE_LIMITS, "rewritten.zip")
        if parsed is None:
            raise _harness.Disagreement(f"rewrite_zip ({how} signing) wrote an archive the reader refuses: {err!r}")
        kept = [e for e in z.entries if e.name not in drop]
        again = parsed[0]
        if [e.name for e in again] != [e.name for e in kept] + [add[0]]:
            raise _harness.Disagreement(f"rewrite_zip ({how} signing) changed the entries or their order")
        for old, new in zip(kept, again, strict=False):
            fields = ("crc", "size", "compressed_size", "method", "mode")
            if any(getattr(old, f) != getattr(new, f) for f in fields):
                raise _harness.Disagreement(f"rewrite_zip ({how} signing) changed entry {old.name!r}")
            old_data = bytes(z.raw_bytes(old.data_offset, old.data_offset + old.compressed_size))
            if data[new.data_offset : new.data_offset + new.compressed_size] != old_data:
                raise _harness.Disagreement(f"rewrite_zip ({how} signing) changed the bytes of {old.name!r}")


def check_readers_on_top(z: ZipArchive) -> None:
    """What reads packages through the strict reader: every one must succeed or refuse."""
    _harness.refused(dify.parse_comment, z.comment, source=str(PATH))
    _harness.refused(dify.read_manifest, z)
    _harness.refused(dify.read_category, z)
    entry = z.get(native.RESERVED_ENTRY)
    if entry is not None:
        data, _ = _harness.refused(z.read, entry, max_size=1 << 20)
        if data is not None:
            _harness.refused(native.SignatureDocument.from_bytes, data, source=native.RESERVED_ENTRY)
    _harness.refused(package.manifest_from_zip, z, source=str(PATH))


def check_formats() -> None:
    """Detection, inspection and verification of the file as `signery verify` and the registry do it."""
    _harness.refused(detect_formats, PATH)
    _harness.refused(native.inspect, PATH)
    _harness.refused(native.verify, PATH, trust=TRUST, now=_harness.NOW)
    _harness.refused(dify.inspect, PATH)
    _harness.refused(dify.verify, PATH, trust=TRUST, now=_harness.NOW)
    _harness.refused(package.read_manifest, PATH)
    _harness.refused(metadata.detect_metadata, PATH)


def test_one_input(data: bytes) -> None:
    archive._PARSE_CACHE.clear()  # rewritten in place within one clock tick, the file could look unchanged
    PATH.write_bytes(data)
    if not data:
        _, err = _harness.refused(ZipArchive.open, PATH, limits=LIMITS)
        if err is None:
            raise _harness.Disagreement("an empty file opened as an archive")
        return
    with PATH.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        ref, ref_err = _harness.refused(archive._parse, mm, len(data), LIMITS, str(PATH))
        if FAST is not None:
            check_scan(mm, ref, ref_err)
    z, err = _harness.refused(ZipArchive.open, PATH, limits=LIMITS)
    if z is None:
        if ref is not None:
            raise _harness.Disagreement(f"ZipArchive.open refused an archive the reference accepts: {err!r}")
        return
    with z:
        if ref is None:
            raise _harness.Disagreement(f"ZipArchive.open accepted an archive the reference refuses: {ref_err!r}")
        if (list(z.entries), z.comment, z.cd_offset) != ref:
            raise _harness.Disagreement("ZipArchive.open listed other entries than the reference")
        files = list(z.files)
        alg = "sha512" if data[-1] & 1 else "sha256"
        expected = reference_digests(z, files, alg)
        if FAST is not None:
            check_fast_digests(z, files, alg, expected)
        check_hash_files(z, files, alg, expected)
        check_rewrite(z)
        check_readers_on_top(z)
    check_formats()


if __name__ == "__main__":
    if os.environ.get("SIGNERY_FUZZ_VERBOSE"):
        print(f"fuzz_zip: accelerator {getattr(FAST, '__file__', None)}", flush=True)
    _harness.fuzz(test_one_input)
