"""The signing service: a FastAPI app that holds private keys sealed at rest and signs for API-key callers.

Example::

    settings = Settings(database_url="sqlite:///service.db", master_key=MasterKey.from_file(path))
    app = create_app(settings)

This is an application with no API promise beyond ``create_app``, ``Settings`` and ``MasterKey``. Imports are lazy, so
that the CLI can read settings without loading FastAPI.

Modules: ``app`` (the wiring), ``routes/`` (HTTP only), ``fastpath`` (the lean front for signing), ``keys/`` (the key
store: ``models``, ``lifecycle``, ``signing``, ``cache``), ``apikeys``, ``audit``, ``ratelimit``, ``envelope`` (keys
sealed at rest), ``storage`` (tables and the database handle), ``settings``, ``state``, ``deps``, ``errors``, and
``runner`` (serving, with worker processes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import MasterKey, Settings

__all__ = ["MasterKey", "Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("MasterKey", "Settings"):
        from . import settings

        return getattr(settings, name)
    raise AttributeError(name)
