"""The FastAPI application: ``create_app(settings)`` wires the database, key store, limits and routers."""

from __future__ import annotations

import threading

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..web import BodyLimit
from .audit import AuditWriter
from .errors import install_handlers
from .fastpath import SignFastPath
from .keys.cache import KeyCache
from .ratelimit import RateLimiter, SharedRateLimiter
from .routes import api_keys, audit, balena, bootstrap, health, keys
from .settings import Settings
from .state import ServiceState
from .storage import Database

API_PREFIX = "/v1"


class ServiceApp(FastAPI):
    """The FastAPI application behind :class:`SignFastPath`: the hot route does not pay for FastAPI's outer layers."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)


def create_app(settings: Settings, *, check_schema: bool = True) -> FastAPI:
    """Build the service for ``settings``; refuses (ConfigError) a database that is not migrated."""
    db = Database(settings.database_url)
    if check_schema:
        db.check_schema()
    app = ServiceApp(
        title="signery signing service",
        version=__version__,
        description="Holds private keys and signs for authenticated callers. Private keys never leave it.",
    )
    state = ServiceState(
        db=db,
        audit=AuditWriter(db),
        keys=KeyCache(settings.master_key),
        limiter=SharedRateLimiter(db, rate=settings.rate_per_second, burst=settings.burst),
        anon_limiter=RateLimiter(rate=settings.rate_per_second, burst=settings.burst),
        auth_cache={},
        auth_lock=threading.Lock(),
    )
    app.state.service = state
    app.state.db = db
    install_handlers(app)
    # Flat, hottest first: every extra router level is walked on every request.
    for module in (keys, bootstrap, audit, api_keys):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router)
    # balenaSign's API (SIGN_API=http://host:port/balena); its artifact routes stream large bodies to disk.
    app.include_router(balena.router)
    assert settings.spool_dir is not None
    app.state.balena = balena.BalenaConfig(spool_dir=settings.spool_dir, limit=settings.max_artifact_body_bytes)
    large = dict.fromkeys(balena.large_paths(), settings.max_artifact_body_bytes)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, limits=large)
    # In front of everything: well-formed sign requests skip FastAPI's machinery but not its checks (fastpath.py).
    app.front = SignFastPath(super(ServiceApp, app).__call__, state=state, limit=settings.max_body_bytes)
    return app
