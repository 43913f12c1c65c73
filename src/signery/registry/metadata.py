"""Package metadata detection: a package's name and version, read from the package itself.

The manifest is read by :mod:`signery.package`, the project's one manifest reader (Dify ``manifest.yaml``, Elastic
``manifest.yml``, Mattermost ``plugin.json``, at the archive root or one directory down), through the strict
archive readers: :mod:`signery.archive` for ZIP, :mod:`signery.host.tarball` for ``.tar.gz``. Reading a package
here also vets it: an upload with traversal, links, duplicates, a bomb, a second gzip member or anything else those
readers refuse is refused before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MalformedError, PolicyViolationError
from ..host.tarball import TarLimits
from ..package import MAX_MANIFEST_BYTES, PackageManifest, read_manifest
from .naming import Version, check_name

MAX_MANIFEST_SIZE = MAX_MANIFEST_BYTES  # manifests are a few KiB; a bigger one is an attack on the YAML/JSON parser
MAX_TAR_ENTRIES = 100_000  # same bound as the zip reader (inode and memory exhaustion)
MAX_TAR_TOTAL_SIZE = 8 << 30  # same bound as the zip reader (declared uncompressed total)
MAX_TAR_RATIO = 200  # gzip bombs reach ~1000:1; real bundles stay far below 100:1
TAR_RATIO_FLOOR = 64 << 20  # small archives are not ratio-checked (tiny text compresses oddly and harmlessly)
TAR_LIMITS = TarLimits(
    max_entries=MAX_TAR_ENTRIES,
    max_total_size=MAX_TAR_TOTAL_SIZE,
    max_entry_size=MAX_TAR_TOTAL_SIZE,
    max_ratio=MAX_TAR_RATIO,
    ratio_floor=TAR_RATIO_FLOOR,
)


@dataclass(frozen=True)
class PackageMetadata:
    """What a package says it is. ``source`` names the manifest entry (``None`` when given by hand)."""

    name: str
    version: str
    source: str | None = None
    manifest: PackageManifest | None = field(default=None, compare=False, repr=False)


def detect_metadata(path: Path, *, name: str | None = None, version: str | None = None) -> PackageMetadata:
    """Read and vet ``path``; return its name and version.

    ``name``/``version`` fill in what the package does not say. When the package does say, they must agree with
    it: a package cannot be published under another package's name.

    Raises:
        UnsafeArchiveError: traversal, links, duplicates, bombs, ambiguous manifests, ... inside the archive.
        PolicyViolationError: ``name``/``version`` disagree with the package's own manifest.
        MalformedError: no name or version can be found, or they are invalid.
    """
    path = Path(path)
    manifest = read_manifest(path, source=path.name, tar_limits=TAR_LIMITS)
    if manifest is None:
        if name is None or version is None:
            raise MalformedError(
                f"{path.name}: no manifest.yaml, manifest.yml or plugin.json found; give --name and --version",
                subject=str(path),
            )
        return PackageMetadata(check_name(name), str(Version(version)))
    meta = _from_manifest(manifest)
    entry = manifest.entry
    if name is not None and name.lower() != meta.name.lower():
        raise PolicyViolationError(
            f"{entry} names the package {meta.name!r}, not {name!r}", subject=f"{path.name}:{entry}"
        )
    if version is not None and Version(version).key != Version(meta.version).key:
        raise PolicyViolationError(
            f"{entry} says version {meta.version!r}, not {version!r}", subject=f"{path.name}:{entry}"
        )
    return meta


def _from_manifest(manifest: PackageManifest) -> PackageMetadata:
    return PackageMetadata(
        check_name(manifest.name), str(Version(manifest.version)), source=manifest.entry, manifest=manifest
    )


__all__ = ["TAR_LIMITS", "PackageMetadata", "detect_metadata"]
