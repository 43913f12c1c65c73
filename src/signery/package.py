"""The one reader of a package's identity manifest: what a package says it is (kind, name, version, author).

Recognised manifests, each at the root of the archive or one directory down:

- Dify ``manifest.yaml`` (``name``, ``version``, ``author``);
- Elastic ``manifest.yml`` (``name``, ``version``, ``owner.github``); Elastic packages are ``name-version/...``;
- Mattermost ``plugin.json`` (``id``, ``version``); bundles are usually ``id/...``. Keys are matched without
  regard to case, as Go's ``encoding/json`` matches them, and two keys equal but for case are refused.

Archives are read only through the strict readers: :class:`signery.archive.ZipArchive` for ZIP and
:func:`signery.host.tarball.scan_tar` for ``.tar.gz``, so reading a manifest also vets the whole package.
Documents are parsed by :mod:`signery._internal.parse` (bounded size and depth; YAML without aliases, duplicate
keys or several documents). ``name`` and ``version`` must be strings: ``version: 1.10`` is a float to PyYAML
(``1.1``) but the text ``1.10`` to Go's YAML decoder, so it is refused rather than guessed at.

Which manifest is *the* manifest:

- a root manifest wins, and there may be only one at the root (``manifest.yaml`` beside ``plugin.json`` is
  ambiguous), nor one of the same name one directory down (``manifest.yml`` and ``x/manifest.yml``);
- without one at the root, a manifest one directory down names the package only when that directory holds the
  whole package (what Mattermost and Elastic take as the package root), and there may be only one;
- a manifest's name in other letter case (``Plugin.json``) is refused where a manifest could be: a reader on a
  case-insensitive file system would take it for the manifest.

Ambiguity is ``unsafe-archive``; an unusable manifest is ``malformed``; both name the manifest(s) at fault.

Versions are read by :class:`Version`, the one version type: the installer orders upgrades with it and the
registry keys its immutable name@version slots with it. A version is a `semantic version
<https://semver.org/spec/v2.0.0.html>`_ (``MAJOR.MINOR.PATCH``, an optional ``-pre.release`` and ``+build``
metadata), or one with a fourth number (``1.2.3.4``), as Dify's plugin daemon accepts. Everything else is refused,
``v1.2.3`` included: the semver specification says it is not a semantic version, and neither Dify's daemon, Elastic's
package registry nor Mattermost (``semver.Parse``) reads one. Leading zeros (``01.2.3``, ``1.0.0-01``) are refused as
semver refuses them, so two spellings never name one version.

Example::

    manifest = read_manifest(Path("plugin.tar.gz"))
    if manifest is not None:
        print(manifest.kind, manifest.name, manifest.version, manifest.entry)
    assert Version("1.2.3-rc.1") < Version("1.2.3") < Version("1.2.3.1") < Version("1.2.4")
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import total_ordering
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._internal.parse import load_json, load_yaml
from .archive import DEFAULT_LIMITS, ArchiveLimits, ZipArchive, is_zip
from .errors import MalformedError, UnsafeArchiveError

if TYPE_CHECKING:  # imported when a tarball is read: signery.host costs ~80 ms, and format modules import this one
    from .host.tarball import TarLimits, TarListing

ManifestKind = Literal["dify", "elastic", "mattermost"]
MAX_MANIFEST_BYTES = 1 << 20  # manifests are a few KiB; a bigger one is an attack on the YAML/JSON parser
MANIFEST_FILES: dict[str, ManifestKind] = {
    "manifest.yaml": "dify",
    "manifest.yml": "elastic",
    "plugin.json": "mattermost",
}


MAX_VERSION_LENGTH = 128  # semver with long pre-release/build tags still fits

_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_VERSION = re.compile(
    # https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string, with a fourth number
    rf"({_NUMBER}(?:\.{_NUMBER}){{2,3}})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A package version, ordered by semver precedence.

    Precedence: the numbers, left to right (a fourth number comes after the three-part version it extends:
    ``1.2.3 < 1.2.3.0 < 1.2.3.1 < 1.2.4``); then a release after all of its pre-releases, whose identifiers compare
    numerically when numeric, in ASCII order otherwise, numeric before alphanumeric, and fewer before more
    (``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0``). Build metadata does not count: ``1.0.0+a == 1.0.0+b``.
    Two versions are equal exactly when their :attr:`key` is the same text.

    Raises:
        MalformedError: ``text`` is not a version by the rule in this module's documentation, or is longer than
            :data:`MAX_VERSION_LENGTH`.
    """

    text: str
    numbers: tuple[int, ...] = field(init=False, repr=False)  # 3 or 4
    pre: tuple[str, ...] = field(init=False, repr=False)  # the pre-release identifiers; () for a release
    build: str | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        text = self.text
        m = _VERSION.fullmatch(text) if isinstance(text, str) and len(text) <= MAX_VERSION_LENGTH else None
        if m is None:
            raise MalformedError(
                f"not a version: {text!r:.{MAX_VERSION_LENGTH + 2}} (semver MAJOR.MINOR.PATCH[-pre][+build], or "
                "with a fourth number; no 'v' prefix, no leading zeros)",
                subject=str(text)[:MAX_VERSION_LENGTH],
            )
        pre = m.group(2)
        object.__setattr__(self, "numbers", tuple(int(n) for n in m.group(1).split(".")))
        object.__setattr__(self, "pre", tuple(pre.split(".")) if pre else ())
        object.__setattr__(self, "build", m.group(3))

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """``Version(text)``, or ``None`` when ``text`` is not a version."""
        try:
            return cls(text)
        except MalformedError:
            return None

    @property
    def key(self) -> str:
        """The version without build metadata: ``1.0.0+a`` and ``1.0.0+b`` are one version, so one immutable slot."""
        return self.text.split("+", 1)[0]

    @property
    def prerelease(self) -> bool:
        return bool(self.pre)

    def _order(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]:
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return self.numbers, 0 if self.pre else 1, ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._order() == other._order()

    def __lt__(self, other: Version) -> bool:
        return self._order() < other._order()

    def __hash__(self) -> int:
        return hash(self._order())

    def __str__(self) -> str:
        return self.text


def latest_version(versions: Iterable[str]) -> str | None:
    """The highest release, or the highest pre-release when there is no release yet; ``None`` for none.

    Raises:
        MalformedError: one of ``versions`` is not a version.
    """
    parsed = [Version(v) for v in versions]
    releases = [v for v in parsed if not v.prerelease]
    pool = releases or parsed
    return str(max(pool)) if pool else None


@dataclass(frozen=True)
class PackageManifest:
    """What a package's manifest says it is.

    Attributes:
        kind: which manifest: ``dify`` (``manifest.yaml``), ``elastic`` (``manifest.yml``) or ``mattermost``
            (``plugin.json``).
        name: Dify/Elastic ``name``, Mattermost ``id``.
        version: ``version``, as written.
        author: Dify ``author``, Elastic ``owner.github``; ``None`` when absent (and for Mattermost).
        entry: the manifest's path inside the archive (``manifest.yaml``, ``nginx-1.0.0/manifest.yml``).
        doc: the whole parsed document.
    """

    kind: ManifestKind
    name: str
    version: str
    author: str | None
    entry: str
    doc: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def root(self) -> str:
        """The directory holding the manifest (the package root): ``""`` at the top of the archive."""
        return self.entry.rsplit("/", 1)[0] if "/" in self.entry else ""


def is_manifest_path(name: str) -> bool:
    """Whether an archive member called ``name`` could be a package's manifest (root or one directory down)."""
    parts = name.split("/")
    return len(parts) <= 2 and parts[-1] in MANIFEST_FILES


def choose_manifest(members: Iterable[tuple[str, bool]], *, source: str) -> str | None:
    """Which of the archive's ``members`` (``(name, is_dir)``, names ``/``-separated without a trailing ``/``) is
    the package's manifest, by the rules above; ``None`` when it has none. Only files are candidates.

    Raises:
        UnsafeArchiveError: several candidates (all named in the message).
        MalformedError: a manifest one directory down in an archive that holds more than that directory.
    """
    all_names: list[str] = []
    candidates: list[str] = []
    for name, is_dir in members:
        all_names.append(name)
        if not is_dir and is_manifest_path(name):
            candidates.append(name)
        elif not is_dir and name.count("/") <= 1 and name.rsplit("/", 1)[-1].casefold() in MANIFEST_FILES:
            raise UnsafeArchiveError(
                f"{source}: {name} is a manifest name in other letter case: readers on case-insensitive file "
                "systems take it for the manifest, others do not",
                subject=f"{source}:{name}",
            )
    at_root = sorted(n for n in candidates if "/" not in n)
    below = sorted(n for n in candidates if "/" in n)

    def ambiguous(found: list[str]) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{source}: ambiguous package metadata: {', '.join(found)} (readers could take either)",
            subject=f"{source}:{found[0]}",
        )

    if at_root:
        same = [n for n in below if n.rsplit("/", 1)[1] in at_root]
        if len(at_root) > 1 or same:
            raise ambiguous(at_root + same)
        return at_root[0]
    if not below:
        return None
    if len(below) > 1:
        raise ambiguous(below)
    top = below[0].split("/", 1)[0]
    others = sorted({n.split("/", 1)[0] for n in all_names} - {top})
    if others:
        raise MalformedError(
            f"{source}: {below[0]} is one directory down, but the package also holds {others[0]!r} beside "
            f"{top!r}: {top}/ is not the package root, so no reader takes it for the package's manifest",
            subject=f"{source}:{below[0]}",
        )
    return below[0]


def parse_manifest(data: bytes, entry: str, *, source: str) -> PackageManifest:
    """The identity in manifest ``entry`` (its kind follows from its file name), read from ``data``.

    Raises:
        MalformedError: over :data:`MAX_MANIFEST_BYTES`, not parseable (or aliases, duplicate keys, deep nesting),
            not a mapping, or ``name``/``id``/``version``/``author`` missing or not strings (field and file named).
    """
    kind = MANIFEST_FILES[entry.rsplit("/", 1)[-1]]
    where = f"{source}:{entry}"
    if len(data) > MAX_MANIFEST_BYTES:
        raise MalformedError(f"{where} is {len(data)} bytes; at most {MAX_MANIFEST_BYTES} expected", subject=where)
    doc: Any
    if kind == "mattermost":
        try:
            text = data.decode("utf-8")  # what Go reads (json.loads would also guess UTF-16 and UTF-32)
        except UnicodeDecodeError:
            raise MalformedError(f"{where} is not UTF-8", subject=where) from None
        doc = load_json(text, source=where, fold_keys=True)
    else:
        doc = load_yaml(data, source=where)
    if not isinstance(doc, dict):
        raise MalformedError(f"{where} is not a mapping", subject=where)
    fold = kind == "mattermost"
    name = _string(doc, "id" if kind == "mattermost" else "name", where, fold=fold, required=True)
    version = _string(doc, "version", where, fold=fold, required=True)
    author: str | None = None
    if kind == "dify":
        author = _string(doc, "author", where, fold=False, required=False) or None
    elif kind == "elastic":
        owner = doc.get("owner")
        github = owner.get("github") if isinstance(owner, dict) else None
        author = github if isinstance(github, str) and github else None
    assert name is not None and version is not None  # required=True
    return PackageManifest(kind, name, version, author, entry, doc)


def _string(doc: dict[str, Any], key: str, where: str, *, fold: bool, required: bool) -> str | None:
    if fold:  # Go's encoding/json: a field matches its key case-insensitively (load_json refused duplicates)
        found = [(k, v) for k, v in doc.items() if isinstance(k, str) and k.casefold() == key]
        present, value = (True, found[0][1]) if found else (False, None)
    else:
        present, value = key in doc, doc.get(key)
    if not present or value is None:
        if required:
            raise MalformedError(f"{where} has no {key!r}", subject=where)
        return None
    if not isinstance(value, str):
        raise MalformedError(
            f"{where}: {key!r} must be a string, not {type(value).__name__} {value!r:.40} (quote it: readers "
            "turn other types into different strings)",
            subject=where,
        )
    if required and not value:
        raise MalformedError(f"{where}: {key!r} is empty", subject=where)
    return value


def manifest_from_zip(archive: ZipArchive, *, source: str | None = None) -> PackageManifest | None:
    """The manifest of an open ZIP package; ``None`` when it has none. ``source`` names it in messages."""
    where = source or str(archive.path)
    entry_name = choose_manifest(((e.name.rstrip("/"), e.is_dir) for e in archive.entries), source=where)
    if entry_name is None:
        return None
    entry = archive.get(entry_name)
    assert entry is not None  # a file entry's name has no trailing "/"
    if entry.size > MAX_MANIFEST_BYTES:
        raise MalformedError(
            f"{where}:{entry_name} is {entry.size} bytes; at most {MAX_MANIFEST_BYTES} expected",
            subject=f"{where}:{entry_name}",
        )
    return parse_manifest(archive.read(entry, max_size=MAX_MANIFEST_BYTES), entry_name, source=where)


def manifest_from_tar(listing: TarListing, *, source: str) -> PackageManifest | None:
    """The manifest of a scanned ``.tar.gz``; ``None`` when it has none.

    The listing must come from ``scan_tar(..., capture=is_manifest_path)`` so that it holds the candidates' bytes
    (up to :data:`MAX_MANIFEST_BYTES`, the scan's default ``capture_max``).
    """
    entry_name = choose_manifest(((m.name, m.is_dir) for m in listing.members), source=source)
    if entry_name is None:
        return None
    member = next(m for m in listing.members if m.name == entry_name)
    data = listing.manifests.get(entry_name)
    if data is None:
        raise MalformedError(
            f"{source}:{entry_name} is {member.size} bytes; at most {MAX_MANIFEST_BYTES} expected",
            subject=f"{source}:{entry_name}",
        )
    return parse_manifest(data, entry_name, source=source)


def read_manifest(
    path: Path,
    *,
    source: str | None = None,
    zip_limits: ArchiveLimits = DEFAULT_LIMITS,
    tar_limits: TarLimits | None = None,
) -> PackageManifest | None:
    """Vet the package at ``path`` (ZIP or ``.tar.gz``) and return its manifest.

    ``None`` when the package has no manifest, or is neither a ZIP nor a gzip file (an opaque file).
    ``tar_limits`` defaults to :data:`signery.host.tarball.DEFAULT_TAR_LIMITS`.

    Raises:
        UnsafeArchiveError: the archive breaks a rule of its reader, or its manifest is ambiguous.
        MalformedError: a damaged archive, or an unusable manifest.
    """
    path = Path(path)
    where = source or str(path)
    if is_zip(path):
        with ZipArchive.open(path, limits=zip_limits) as archive:
            return manifest_from_zip(archive, source=where)
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:
        from .host.tarball import DEFAULT_TAR_LIMITS, scan_tar

        listing = scan_tar(
            path,
            limits=tar_limits or DEFAULT_TAR_LIMITS,
            capture=is_manifest_path,
            capture_max=MAX_MANIFEST_BYTES,
            source=where,
        )
        return manifest_from_tar(listing, source=where)
    return None


__all__ = [
    "MANIFEST_FILES",
    "MAX_MANIFEST_BYTES",
    "MAX_VERSION_LENGTH",
    "ManifestKind",
    "PackageManifest",
    "Version",
    "choose_manifest",
    "is_manifest_path",
    "latest_version",
    "manifest_from_tar",
    "manifest_from_zip",
    "parse_manifest",
    "read_manifest",
]
