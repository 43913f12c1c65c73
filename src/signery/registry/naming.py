"""Package names, semantic versions and file names: parsed and validated in exactly one place.

Everything here reaches the registry from untrusted uploads or URLs, and reaches the client from an untrusted
registry, so both sides use these same checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from ..errors import MalformedError

MAX_NAME_LENGTH = 128  # longer than any real plugin id (Mattermost uses reverse-DNS ids)
MAX_VERSION_LENGTH = 128  # semver with long pre-release/build tags still fits
MAX_FILENAME_LENGTH = 200  # well under every filesystem's 255-byte limit, leaving room for suffixes

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
SIGNATURE_SUFFIXES = (".signery.json", ".sig", ".asc")  # native DSSE, OpenPGP binary, OpenPGP armored
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_name(name: str) -> str:
    """A package name: letters, digits, ``.``, ``_``, ``-``; no path separators, no leading dot."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name) or ".." in name:
        raise MalformedError(f"invalid package name {name!r}", subject=str(name)[:MAX_NAME_LENGTH])
    return name


def name_key(name: str) -> str:
    """The key names are unique by: ``Foo`` and ``foo`` are the same package, so neither can impersonate the other."""
    return check_name(name).lower()


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise MalformedError(f"not a lowercase hex sha256: {value!r}", subject=str(value)[:80])
    return value


def check_filename(filename: str, *, what: str = "file name") -> str:
    """A plain file name: no directories, no leading dot, no traversal; safe to join under any directory."""
    if (
        not isinstance(filename, str)
        or len(filename) > MAX_FILENAME_LENGTH
        or not _FILENAME.fullmatch(filename)
        or ".." in filename
    ):
        raise MalformedError(f"invalid {what} {filename!r}", subject=str(filename)[:MAX_FILENAME_LENGTH])
    return filename


def check_signature_filename(filename: str) -> str:
    check_filename(filename, what="signature file name")
    if not filename.endswith(SIGNATURE_SUFFIXES):
        raise MalformedError(
            f"signature file {filename!r} must end with one of {', '.join(SIGNATURE_SUFFIXES)}",
            subject=filename,
        )
    return filename


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A semantic version (2.0.0); ordered by semver precedence, build metadata ignored for ordering."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or len(self.text) > MAX_VERSION_LENGTH or not _SEMVER.fullmatch(self.text):
            raise MalformedError(f"not a semantic version: {self.text!r}", subject=str(self.text)[:MAX_VERSION_LENGTH])

    @property
    def _parts(self) -> tuple[int, int, int, tuple[str, ...]]:
        m = _SEMVER.fullmatch(self.text)
        assert m is not None
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre

    @property
    def key(self) -> str:
        """The version without build metadata: ``1.0.0+a`` and ``1.0.0+b`` are one version, so one immutable slot."""
        return self.text.split("+", 1)[0]

    @property
    def prerelease(self) -> bool:
        return bool(self._parts[3])

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        major, minor, patch, pre = self._parts
        # A release sorts after all of its pre-releases; numeric identifiers sort before alphanumeric ones.
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre)
        return major, minor, patch, 0 if pre else 1, ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text


def latest_version(versions: list[str]) -> str | None:
    """The highest release, or the highest pre-release when there is no release yet."""
    parsed = [Version(v) for v in versions]
    releases = [v for v in parsed if not v.prerelease]
    pool = releases or parsed
    return str(max(pool)) if pool else None
