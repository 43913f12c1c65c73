"""The signing service: a FastAPI app that holds private keys sealed at rest and signs for API-key callers.

Example::

    settings = Settings(database_url="sqlite:///service.db", master_key=MasterKey.from_file(path))
    app = create_app(settings)

Imports are lazy so that clients (``signery.remote``) can use small modules such as ``names`` without FastAPI.
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
