"""Atomic file writes, kept importable here for the many modules that use them: see :mod:`signery._internal.files`."""

from __future__ import annotations

import os  # noqa: F401 - tests/unit/test_trust.py patches ``signery._fs.os.replace`` (the os module itself)

from ._internal.files import atomic_write_bytes, atomic_writer

__all__ = ["atomic_write_bytes", "atomic_writer"]
