"""The one rule for the names signery's servers and clients accept: signing keys, API keys and packages.

A name is letters, digits, ``.``, ``_`` and ``-``, starts and ends with a letter or digit, and never holds ``..``. So
a name is never a path (no separator, never ``.`` or ``..``, no leading dot), never looks like a command-line option
(no leading ``-``), and is the same text in a URL, a file name and a database row. Each kind of name has its own
length limit; the rule is otherwise the same for all.
"""

from __future__ import annotations

import re
from functools import cache

from ..errors import UsageError

KEY_NAME_LENGTH = 64  # signing keys and API keys of the signing service
PACKAGE_NAME_LENGTH = 128  # longer than any real plugin id (Mattermost uses reverse-DNS ids)


@cache
def name_pattern(max_length: int = KEY_NAME_LENGTH, *, anchored: bool = True) -> str:
    """The rule as a regular expression without look-around (pydantic and FastAPI patterns use it), short of the
    ``..`` ban, which :func:`is_name` and :func:`check_name` add. ``anchored``: with ``^`` and ``$``."""
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    body = rf"[A-Za-z0-9](?:[A-Za-z0-9._-]{{0,{max_length - 2}}}[A-Za-z0-9])?"
    return f"^{body}$" if anchored else body


@cache
def _compiled(max_length: int) -> re.Pattern[str]:
    return re.compile(name_pattern(max_length))


def is_name(name: object, *, max_length: int = KEY_NAME_LENGTH) -> bool:
    """Whether ``name`` follows the rule (for callers that route rather than refuse)."""
    return isinstance(name, str) and ".." not in name and _compiled(max_length).fullmatch(name) is not None


def check_name(name: object, *, what: str = "key name", max_length: int = KEY_NAME_LENGTH) -> str:
    """Return ``name`` if it follows the rule; raise :class:`~signery.errors.UsageError` naming ``what`` otherwise."""
    if not is_name(name, max_length=max_length):
        shown = str(name)[:max_length]
        raise UsageError(
            f"invalid {what} {shown!r}: use 1 to {max_length} letters, digits, '.', '_' and '-', starting and "
            "ending with a letter or digit, without '..'",
            subject=shown,
        )
    assert isinstance(name, str)
    return name


NAME_PATTERN = name_pattern(KEY_NAME_LENGTH)

__all__ = ["KEY_NAME_LENGTH", "NAME_PATTERN", "PACKAGE_NAME_LENGTH", "check_name", "is_name", "name_pattern"]
