"""Package names and file names in the registry: validated in exactly one place.

Everything here reaches the registry from untrusted uploads or URLs, and reaches the client from an untrusted
registry, so both sides use these same checks. Versions are :class:`signery.package.Version`, the one version type
(re-exported here with :func:`~signery.package.latest_version` for the registry's modules).
"""

from __future__ import annotations

import re

from .._internal import names
from .._internal.names import PACKAGE_NAME_LENGTH
from ..errors import MalformedError
from ..package import MAX_VERSION_LENGTH, Version, latest_version

MAX_NAME_LENGTH = PACKAGE_NAME_LENGTH
MAX_FILENAME_LENGTH = 200  # well under every filesystem's 255-byte limit, leaving room for suffixes

_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
SIGNATURE_SUFFIXES = (".signery.json", ".sig", ".asc")  # native DSSE, OpenPGP binary, OpenPGP armored
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_name(name: str) -> str:
    """A package name, by signery's one name rule (:mod:`signery._internal.names`), up to 128 characters."""
    return names.check_name(name, what="package name", max_length=MAX_NAME_LENGTH)


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


__all__ = [
    "MAX_FILENAME_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_VERSION_LENGTH",
    "SIGNATURE_SUFFIXES",
    "Version",
    "check_filename",
    "check_name",
    "check_sha256",
    "check_signature_filename",
    "latest_version",
    "name_key",
]
