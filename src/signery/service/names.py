"""Names of keys and API keys: a small alphabet, never a path."""

from __future__ import annotations

import re

from ..errors import UsageError

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str, *, what: str = "key name") -> str:
    """Return ``name`` if it is a valid name (``.`` and ``..`` are refused too); raise a usage error otherwise."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"{what} {name[:80]!r} must match {NAME_PATTERN} and not be . or ..", subject=name[:80])
    return name
