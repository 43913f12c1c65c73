"""The registry web application: ``create_app(settings)`` wires the store, the routers and the error handlers.

Run it with ``signery registry serve`` (uvicorn), or mount it in any ASGI server. OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from ..keys import Signer
from ..web import BodyLimit
from .catalog import Catalog
from .fastpath import RegistryFastPath
from .http_errors import install_error_handlers
from .routes import dify, elastic, health, mattermost, packages, publish, signed_index
from .routes.elastic import ResponseCache
from .routes.packages import VersionCache
from .settings import RegistrySettings
from .signed_index import STATE_DIR, IndexPublisher
from .store import RegistryStore

MAX_JSON_BODY = 1 << 20  # a publish request names a few digests; FastAPI buffers JSON bodies before auth runs


def create_app(
    settings: RegistrySettings, *, store: RegistryStore | None = None, index_signer: Signer | None = None
) -> FastAPI:
    """A FastAPI app serving the registry described by ``settings`` (the database is migrated on creation).

    ``index_signer`` signs the index served at ``/api/index`` (:mod:`signery.registry.signed_index`); without
    one the registry signs no index.
    """
    the_store = store if store is not None else RegistryStore(settings)
    catalog = Catalog(the_store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(catalog.refresh)  # load the catalogue (and lay out the static tree) before serving
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
    app.state.catalog = catalog
    app.state.elastic_cache = elastic_cache = ResponseCache()
    app.state.index_publisher = (
        IndexPublisher(index_signer, settings.data_dir / STATE_DIR, expiry=settings.index_expiry)
        if index_signer is not None
        else None
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(packages.router)
    app.include_router(publish.router)
    app.include_router(signed_index.router)
    protocols = {"elastic": elastic.router, "mattermost": mattermost.router, "dify": dify.router}
    for name in sorted(settings.protocols):
        app.include_router(protocols[name])
    # Uploads stream to disk under the blob size limit; every other body is a small JSON document.
    app.add_middleware(BodyLimit, limit=MAX_JSON_BODY, exempt=frozenset({"/api/uploads"}))
    # Outermost: plain downloads and cached searches are answered before FastAPI's routing (fastpath.py).
    app.add_middleware(RegistryFastPath, catalog=catalog, settings=settings, search_cache=elastic_cache)
    return app
