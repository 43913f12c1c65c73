"""The registry's index documents (what ``GET /api/packages/...`` returns and what a mirror bundle carries).

Parsed in exactly one place, here, by the server (to write them) and by the client and the mirror (to read what an
untrusted registry or bundle says). Every field a client acts on is validated: names, versions, file names,
digests, sizes. An index never vouches for a package; it only says which bytes to expect.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._internal.records import fields_json
from ..errors import MalformedError
from .naming import Version, check_filename, check_name, check_sha256, check_signature_filename, latest_version

# The limits every index obeys, the server's and the client's alike. They live here, not in settings, so that the
# client (and a mirror) can read an index without importing what the server needs (SQLAlchemy, the database).
MAX_PACKAGE_SIZE = 1 << 40  # what a client will accept from any index: 1 TiB, only to keep sizes sane integers
MAX_SIGNATURE_SIZE = 1 << 20  # a detached signature (DSSE envelope, armored OpenPGP) is a few KiB; 1 MiB is ample
MAX_SIGNATURES_PER_VERSION = 32  # author + countersignatures; more is abuse, and every one is served on each fetch


def _size(value: Any, *, limit: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > limit:
        raise MalformedError(f"invalid {what} size {value!r}", subject=what)
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise MalformedError(f"index field {key!r} is missing or not a string", subject=key)
    return value


def _dict(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise MalformedError(f"{what} is not a JSON object", subject=what)
    return doc


@dataclass(frozen=True)
class SignatureEntry:
    """One detached signature of a version, served as opaque bytes."""

    filename: str
    sha256: str
    size: int
    path: str = ""

    def __post_init__(self) -> None:
        check_signature_filename(self.filename)
        check_sha256(self.sha256)
        _size(self.size, limit=MAX_SIGNATURE_SIZE, what="signature")

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "sha256": self.sha256, "size": self.size, "path": self.path}

    @classmethod
    def from_dict(cls, doc: Any) -> SignatureEntry:
        d = _dict(doc, "signature entry")
        size: Any = d.get("size")
        return cls(filename=_str(d, "filename"), sha256=_str(d, "sha256"), size=size, path=str(d.get("path", "")))


@dataclass(frozen=True)
class VersionIndex:
    """One published name@version: which bytes to expect and where its signatures are."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int
    signatures: tuple[SignatureEntry, ...] = ()
    published_at: str | None = None
    download_path: str = ""
    signature_path: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        Version(self.version)
        check_filename(self.filename, what="package file name")
        check_sha256(self.sha256)
        _size(self.size, limit=MAX_PACKAGE_SIZE, what="package")
        if len(self.signatures) > MAX_SIGNATURES_PER_VERSION:
            raise MalformedError(f"{self.name}@{self.version} lists too many signatures", subject=self.name)
        names = [s.filename for s in self.signatures]
        if len(set(names)) != len(names):
            raise MalformedError(f"{self.name}@{self.version} lists a signature file twice", subject=self.name)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        names = "name version filename sha256 size download_path signature_path signatures published_at"
        return fields_json(self, names)

    @classmethod
    def from_dict(cls, doc: Any) -> VersionIndex:
        d = _dict(doc, "version index")
        sigs = d.get("signatures", [])
        if not isinstance(sigs, list) or len(sigs) > MAX_SIGNATURES_PER_VERSION:
            raise MalformedError("index field 'signatures' is not a bounded list", subject="signatures")
        sig_path = d.get("signature_path")
        return cls(
            name=_str(d, "name"),
            version=_str(d, "version"),
            filename=_str(d, "filename"),
            sha256=_str(d, "sha256"),
            size=d.get("size"),  # type: ignore[arg-type]
            signatures=tuple(SignatureEntry.from_dict(s) for s in sigs),
            published_at=d.get("published_at") if isinstance(d.get("published_at"), str) else None,
            download_path=str(d.get("download_path", "")),
            signature_path=sig_path if isinstance(sig_path, str) else None,
        )


@dataclass(frozen=True)
class PackageSummary:
    """A package and its versions, newest first (``GET /api/packages/{name}`` and search results)."""

    name: str
    latest: str | None
    versions: tuple[str, ...] = ()
    signed: bool = False  # whether the latest version carries a signature: detached, or embedded in the package
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "latest": self.latest, "signed": self.signed, "versions": list(self.versions)}

    @classmethod
    def from_dict(cls, doc: Any) -> PackageSummary:
        d = _dict(doc, "package summary")
        versions = d.get("versions", [])
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise MalformedError("index field 'versions' is not a list of strings", subject="versions")
        latest = d.get("latest")
        return cls(
            name=check_name(_str(d, "name")),
            latest=str(Version(latest)) if isinstance(latest, str) else None,
            versions=tuple(str(Version(v)) for v in versions),
            signed=bool(d.get("signed", False)),
        )


def matching(packages: Iterable[VersionIndex], name: str, version: str | None) -> list[VersionIndex]:
    """The entries of ``packages`` for name@version (name without regard to case, the version by its key); for
    ``version`` None, those of the latest version listed."""
    mine = [p for p in packages if p.name.lower() == name.lower()]
    if version is None:
        latest = latest_version([p.version for p in mine])
        return [p for p in mine if p.version == latest]
    return [p for p in mine if Version(p.version).key == Version(version).key]
