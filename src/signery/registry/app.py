"""The registry web application: ``create_app(settings)`` wires the store, the routers and the error handlers.

Run it with ``signery registry serve`` (uvicorn), or mount it in any ASGI server. OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .http_errors import install_error_handlers
from .routes import health, packages, publish
from .routes.packages import VersionCache
from .settings import RegistrySettings
from .store import RegistryStore

MAX_JSON_BODY = 1 << 20  # a publish request names a few digests; FastAPI buffers JSON bodies before auth runs
_TOO_LARGE = b'{"error":{"reason":"malformed","message":"request body too large","subject":null}}'


class _JsonBodyLimit:
    """Refuse bodies over :data:`MAX_JSON_BODY` (413) everywhere but ``/api/uploads``, which streams to disk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/api/uploads":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_JSON_BODY:
                await _reply_too_large(send)
                return
        seen, refused = 0, False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_JSON_BODY:
                    refused = True
                    await _reply_too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded)


async def _reply_too_large(send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_TOO_LARGE)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": _TOO_LARGE})


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
    app.add_middleware(_JsonBodyLimit)
    return app
