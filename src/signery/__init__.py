"""signery: sign software packages, and refuse the ones not signed by someone you trust.

The public API is this package's documented modules: :mod:`signery.keys`, :mod:`signery.trust`,
:mod:`signery.errors`, :mod:`signery.result`, :mod:`signery.archive`, :mod:`signery.digests` and the format
modules under :mod:`signery.formats`. Modules and names starting with ``_`` are internal.
"""

from __future__ import annotations

__version__ = "0.1.0"
