"""The native format's fast subject comparison: the canonical JSON a package's files give, compared as bytes.

:mod:`signery.formats.native` re-exports every name here; see its ``_check_contents``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

from ..archive import _fastzip
from ._native_statement import canonical_order

_SUBJECT_KEY = b',"subject":['
_PLAIN_NAMES = re.compile(r'[\x00-\x1f"\\]')  # characters RFC 8785 writes as escapes


def _split_payload(payload: bytes) -> tuple[bytes, bytes] | None:
    """Split a canonical statement into its head (up to the subject array) and the array's contents.

    In RFC 8785 form the subject array is the last member, so the payload is ``head + contents + "]}"``. Verifying
    a package of 100,000 files then needs no parse of its 100,000 subjects: :func:`_check_contents` writes the
    contents the package's files give (in canonical order, then in package order: see :class:`_Files`) and
    compares bytes. Parsing ``head + "]}"`` checks everything else, and, as JSON composes, a payload whose contents
    are the ones written parses to exactly those subjects (unique names, as a package's are). Any other layout
    (``None``) is parsed whole.
    """
    if not payload.endswith(b"]}"):
        return None
    at = payload.rfind(_SUBJECT_KEY)
    if at < 0:
        return None
    cut = at + len(_SUBJECT_KEY)
    return payload[:cut], payload[cut:-2]


def _subjects_json(have: Sequence[tuple[str, str]], alg: str) -> bytes | None:
    """The canonical JSON of the subject array's contents for ``have``, or ``None`` if a name needs escapes."""
    if _fastzip is not None:  # the accelerator writes the same bytes for plain ASCII names (tested differentially)
        fast = _fastzip.subjects_json(have, alg)
        if fast is not None:
            return fast
    return _subjects_json_py(have, alg)


def _subjects_json_py(have: Sequence[tuple[str, str]], alg: str) -> bytes | None:
    """The pure-Python writer, for any names, and the reference the accelerator's writer is tested against."""
    if _PLAIN_NAMES.search("/".join(n for n, _ in have)):
        return None
    return ",".join([f'{{"digest":{{"{alg}":"{h}"}},"name":"{n}"}}' for n, h in have]).encode()


class _Files:
    """The package's files with their hex digests in one algorithm, and the subject arrays they give: each is made
    once, however many signatures use that algorithm, and only when a signature needs it."""

    def __init__(self, listing: list[tuple[str, str]], alg: str) -> None:
        self.listing = listing  # package order: central-directory order for a ZIP, sorted for a directory
        self.alg = alg

    @cached_property
    def _sorted(self) -> list[tuple[str, str]]:
        return canonical_order(self.listing)

    @cached_property
    def canonical_array(self) -> bytes | None:
        """The subject array contents signing writes for these files (in :func:`canonical_order`)."""
        return _subjects_json(self._sorted, self.alg)

    @cached_property
    def package_array(self) -> bytes | None:
        """The contents in package order, as signery wrote them before subjects were sorted (``None`` if equal)."""
        same = self._sorted == self.listing  # the same objects when already sorted: compared by identity
        return None if same else _subjects_json(self.listing, self.alg)
