"""The registry web application: ``create_app(settings)`` wires the store, the routers and the error handlers.

Run it with ``signery registry serve`` (uvicorn), or mount it in any ASGI server. OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..web import BodyLimit
from .http_errors import install_error_handlers
from .routes import health, packages, publish
from .routes.packages import VersionCache
from .settings import RegistrySettings
from .store import RegistryStore

MAX_JSON_BODY = 1 << 20  # a publish request names a few digests; FastAPI buffers JSON bodies before auth runs


def create_app(settings: RegistrySettings, *, store: RegistryStore | None = None) -> FastAPI:
    """A FastAPI app serving the registry described by ``settings`` (the database is migrated on creation)."""
    the_store = store if store is not None else RegistryStore(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if store is None:
            the_store.close()

    app = FastAPI(
        title="signery registry",
        version="1",
        summary="Distributes packages and their detached signatures. It never vouches for them: clients verify.",
        lifespan=lifespan,
    )
    app.state.store = the_store
    app.state.version_cache = VersionCache()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(packages.router)
    app.include_router(publish.router)
    # Uploads stream to disk under the blob size limit; every other body is a small JSON document.
    app.add_middleware(BodyLimit, limit=MAX_JSON_BODY, exempt=frozenset({"/api/uploads"}))
    return app
