"""Package metadata detection: a package's name and version, read from the package itself.

Recognised: Dify ``manifest.yaml``, Elastic ``manifest.yml`` (zip), Mattermost ``plugin.json`` (``.tar.gz`` or
zip), at the archive root or one directory down. Zips are read only through :mod:`signery.archive`, the project's
strict reader; gzipped tars through :func:`scan_tar`, which applies the same name rules. Reading a package here also
vets it: an upload with traversal, links, duplicates or a bomb inside is refused before anything is stored.
"""

from __future__ import annotations

import gzip
import json
import tarfile
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..archive import ZipArchive, check_entry_name, is_zip
from ..errors import MalformedError, PolicyViolationError, UnsafeArchiveError
from .naming import Version, check_name

MAX_MANIFEST_SIZE = 1 << 20  # manifests are a few KiB; a bigger one is an attack on the YAML/JSON parser
MAX_TAR_ENTRIES = 100_000  # same bound as the zip reader (inode and memory exhaustion)
MAX_TAR_TOTAL_SIZE = 8 << 30  # same bound as the zip reader (declared uncompressed total)
MAX_TAR_RATIO = 200  # gzip bombs reach ~1000:1; real bundles stay far below 100:1
TAR_RATIO_FLOOR = 64 << 20  # small archives are not ratio-checked (tiny text compresses oddly and harmlessly)
_MANIFESTS = ("manifest.yaml", "manifest.yml", "plugin.json")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class PackageMetadata:
    """What a package says it is. ``source`` names the manifest entry (``None`` when given by hand)."""

    name: str
    version: str
    source: str | None = None


def detect_metadata(path: Path, *, name: str | None = None, version: str | None = None) -> PackageMetadata:
    """Read and vet ``path``; return its name and version.

    ``name``/``version`` fill in what the package does not say. When the package does say, they must agree with
    it: a package cannot be published under another package's name.

    Raises:
        UnsafeArchiveError: traversal, links, duplicates, bombs, ... inside the archive.
        PolicyViolationError: ``name``/``version`` disagree with the package's own manifest.
        MalformedError: no name or version can be found, or they are invalid.
    """
    found = _read_manifest(path)
    if found is None:
        if name is None or version is None:
            raise MalformedError(
                f"{path.name}: no manifest.yaml, manifest.yml or plugin.json found; give --name and --version",
                subject=str(path),
            )
        return PackageMetadata(check_name(name), str(Version(version)))
    entry, doc = found
    meta = _from_manifest(entry, doc)
    if name is not None and name.lower() != meta.name.lower():
        raise PolicyViolationError(
            f"{entry} names the package {meta.name!r}, not {name!r}", subject=f"{path.name}:{entry}"
        )
    if version is not None and Version(version).key != Version(meta.version).key:
        raise PolicyViolationError(
            f"{entry} says version {meta.version!r}, not {version!r}", subject=f"{path.name}:{entry}"
        )
    return meta


def _manifest_candidates(names: list[str]) -> list[str]:
    hits = []
    for n in names:
        parts = n.split("/")
        if parts[-1] in _MANIFESTS and len(parts) <= 2:
            hits.append(n)
    if not hits:
        return []
    root = [h for h in hits if "/" not in h]
    chosen = root or hits
    if len(chosen) > 1:
        raise UnsafeArchiveError(f"ambiguous package metadata: {', '.join(sorted(chosen))}", subject=chosen[0])
    return chosen


def _read_manifest(path: Path) -> tuple[str, bytes] | None:
    with path.open("rb") as fh:
        head = fh.read(4)
    if is_zip(path):
        with ZipArchive.open(path) as archive:
            chosen = _manifest_candidates([e.name for e in archive.files])
            if not chosen:
                return None
            entry = archive.get(chosen[0])
            assert entry is not None
            return chosen[0], archive.read(entry, max_size=MAX_MANIFEST_SIZE)
    if head.startswith(_GZIP_MAGIC):
        return scan_tar(path)
    return None  # an opaque file: only --name/--version can say what it is


def scan_tar(path: Path) -> tuple[str, bytes] | None:
    """Vet every member of a gzipped tar and return its manifest ``(entry, bytes)``, if any.

    Only regular files and directories are allowed; names follow the zip reader's rules, and must be unique
    (also after case folding and Unicode normalisation, as on case-insensitive filesystems).
    """
    seen: set[str] = set()
    total = 0
    names: list[str] = []
    manifests: dict[str, bytes] = {}
    compressed = path.stat().st_size
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_TAR_ENTRIES:
                    raise UnsafeArchiveError(f"more than {MAX_TAR_ENTRIES} entries", subject=str(path))
                name = member.name
                check_entry_name(name)
                if not (member.isfile() or member.isdir()):
                    kind = "link" if (member.issym() or member.islnk()) else "special file"
                    raise UnsafeArchiveError(f"entry {name!r} is a {kind}", subject=name)
                folded = unicodedata.normalize("NFC", name.rstrip("/")).casefold()
                if folded in seen:
                    raise UnsafeArchiveError(f"duplicate entry {name!r}", subject=name)
                seen.add(folded)
                total += member.size
                if total > MAX_TAR_TOTAL_SIZE or (total > TAR_RATIO_FLOOR and total > MAX_TAR_RATIO * compressed):
                    raise UnsafeArchiveError(f"uncompressed size exceeds limits at {name!r} (bomb?)", subject=name)
                if member.isfile():
                    names.append(name)
                    if name.split("/")[-1] in _MANIFESTS and name.count("/") <= 1:
                        if member.size > MAX_MANIFEST_SIZE:
                            raise UnsafeArchiveError(f"{name!r} is {member.size} bytes", subject=name)
                        fh = tar.extractfile(member)
                        assert fh is not None
                        manifests[name] = fh.read(MAX_MANIFEST_SIZE + 1)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise MalformedError(f"{path.name} is not a valid .tar.gz: {exc}", subject=str(path)) from exc
    chosen = _manifest_candidates(names)
    return (chosen[0], manifests[chosen[0]]) if chosen else None


def _from_manifest(entry: str, data: bytes) -> PackageMetadata:
    base = entry.split("/")[-1]
    doc: Any
    try:
        if base == "plugin.json":
            doc = json.loads(data)
            name, version = (doc.get("id"), doc.get("version")) if isinstance(doc, dict) else (None, None)
        else:
            doc = _safe_yaml(data, entry)
            name, version = (doc.get("name"), doc.get("version")) if isinstance(doc, dict) else (None, None)
    except (ValueError, yaml.YAMLError) as exc:
        raise MalformedError(f"{entry} cannot be parsed: {exc}", subject=entry) from exc
    if not isinstance(name, str) or not isinstance(version, str):
        raise MalformedError(f"{entry} has no string name/id and version", subject=entry)
    return PackageMetadata(check_name(name), str(Version(version)), source=entry)


def _safe_yaml(data: bytes, entry: str) -> Any:
    # Aliases are how "billion laughs" documents explode in memory; a manifest has no use for them.
    for event in yaml.parse(data, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise UnsafeArchiveError(f"{entry} uses YAML aliases", subject=entry)
    return yaml.safe_load(data)
