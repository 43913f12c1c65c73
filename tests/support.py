"""Helpers shared by test modules (import as ``from support import ...``; ``tests/`` is on sys.path).

They live here rather than in ``tests/conftest.py`` because several directories have a conftest of their own,
and every one of them is imported under the same module name, ``conftest``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"  # real signed artifacts, with their provenance (tests/vectors/PROVENANCE.md)
# Names Windows opens as devices whatever their extension; strategies that generate names leave them out.
WINDOWS_DEVICES = frozenset(["CON", "PRN", "AUX", "NUL"] + [f"{p}{n}" for p in ("COM", "LPT") for n in range(10)])
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(msg: str) -> NoReturn:
    """A part the test command installs is absent: fail in CI (tests never skip there), skip elsewhere."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def require_tool(name: str) -> str:
    """Path of an external tool that the test command installs; fail in CI, skip elsewhere, when missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (scripts/test installs it)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path
