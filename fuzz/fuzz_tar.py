"""Fuzz the ``.tar.gz`` bundle reader (Mattermost plugins): ``scan_tar``, ``extract_tar``, and what reads bundles.

An input that does not start with the gzip magic is gzipped first (quickly, level 1), so mutations reach the tar
headers rather than dying in the deflate stream; inputs that are already gzipped are used as they are.

For every input, ``scan_tar`` either lists the bundle or refuses it (``SigneryError``). On a listing:

- ``extract_tar`` into an empty directory must write exactly the listed files (sizes, digests, manifests as
  listed) and nothing else: no links, nothing outside the directory; and so must extraction of the one top-level
  directory, as the installer does for bundles that keep ``plugin.json`` one level down;
- the package manifest reader (what the installer and the registry take a bundle's identity from) and the
  registry's metadata reader must succeed or refuse.

Limits are small (64 members, 256 KiB each, 1 MiB in all).

    .venv/bin/python fuzz/fuzz_tar.py -max_total_time=60 CORPUS_DIR
    .venv/bin/python fuzz/fuzz_tar.py crash-file
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zlib
from pathlib import Path

import _harness
import atheris

with atheris.instrument_imports(include=["signery"]):
    from signery import package
    from signery.archive import check_entry_name
    from signery.host.tarball import TarLimits, TarListing, extract_tar, scan_tar
    from signery.registry import metadata

# Small bounds, and a low ratio floor so that the declared-size-to-file-size rule is reached too.
LIMITS = TarLimits(max_entries=64, max_total_size=1 << 20, max_entry_size=256 << 10, ratio_floor=64 << 10)
SCRATCH = _harness.scratch()
PATH = SCRATCH / "input.tar.gz"
DEST = SCRATCH / "out"


def gzipped(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return data
    c = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    return c.compress(data) + c.flush()


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root``: ``"dir"`` for directories, else the SHA-256 of the file. Links are a bug."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                raise _harness.Disagreement(f"extraction created a symbolic link {rel!r}")
            if p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                raise _harness.Disagreement(f"extraction created a special file {rel!r}")
    return out


def check_extract(listing: TarListing, root: str) -> None:
    prefix = f"{root}/" if root else ""
    shutil.rmtree(DEST, ignore_errors=True)
    DEST.mkdir()
    written, err = _harness.refused(extract_tar, PATH, DEST, listing, root=root)
    if written is None:
        raise _harness.Disagreement(f"extract_tar refused a bundle scan_tar accepted: {err!r}")
    files = {m.name[len(prefix) :]: m for m in listing.members if not m.is_dir and m.name.startswith(prefix)}
    if set(written) != set(files):
        raise _harness.Disagreement(f"extract_tar(root={root!r}) wrote {sorted(written)}; listed: {sorted(files)}")
    on_disk = tree(DEST)
    for rel, digest in written.items():
        if on_disk.get(rel) != digest:
            raise _harness.Disagreement(f"{rel!r} on disk is not what extract_tar reports writing")
        if (DEST / rel).stat().st_size != files[rel].size:
            raise _harness.Disagreement(f"{rel!r} was written with another size than listed")
        name = prefix + rel
        if name in listing.manifests and listing.manifests[name] != (DEST / rel).read_bytes():
            raise _harness.Disagreement(f"the listed content of {name!r} is not what was extracted")
    dirs = {m.name[len(prefix) :] for m in listing.members if m.is_dir and m.name.startswith(prefix)}
    parents = {"/".join(rel.split("/")[:i]) for rel in (*written, *dirs) for i in range(1, rel.count("/") + 1)}
    extra = set(on_disk) - set(written) - dirs - parents
    if extra:
        raise _harness.Disagreement(f"extract_tar(root={root!r}) wrote unlisted paths {sorted(extra)}")


def test_one_input(data: bytes) -> None:
    PATH.write_bytes(gzipped(data))
    listing, _ = _harness.refused(scan_tar, PATH, limits=LIMITS, capture=package.is_manifest_path)
    _harness.refused(package.read_manifest, PATH)
    _harness.refused(metadata.detect_metadata, PATH)
    if listing is None:
        return
    names = [m.name for m in listing.members]
    if len(set(names)) != len(names):
        raise _harness.Disagreement("scan_tar listed a member twice")
    for m in listing.members:
        _, err = _harness.refused(check_entry_name, m.name)
        if err is not None:
            raise _harness.Disagreement(f"scan_tar listed {m.name!r}, a name the entry rules refuse: {err!r}")
    check_extract(listing, "")
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and any(m.is_dir and m.name in tops for m in listing.members):
        check_extract(listing, next(iter(tops)))
    _harness.refused(package.manifest_from_tar, listing, source=str(PATH))


if __name__ == "__main__":
    _harness.fuzz(test_one_input)
