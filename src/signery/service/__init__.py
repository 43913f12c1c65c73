"""The signing service: a FastAPI app that holds private keys sealed at rest and signs for API-key callers.

Example::

    settings = Settings(database_url="sqlite:///service.db", master_key=MasterKey.from_file(path))
    app = create_app(settings)
"""

from __future__ import annotations

from .app import create_app
from .settings import MasterKey, Settings

__all__ = ["MasterKey", "Settings", "create_app"]
