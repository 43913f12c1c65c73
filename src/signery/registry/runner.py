"""Serving the registry: uvicorn in this process, or a supervisor of worker processes sharing the port.

As for the signing service (:mod:`signery.service.runner`, whose :class:`~signery.service.runner.Listen` and
listening sockets this reuses), several workers each get their own ``SO_REUSEPORT`` socket, so the kernel spreads
connections over them from the start. Each worker is a whole registry: its own catalogue (kept in step with the
database by polling, :mod:`signery.registry.catalog`), its own response caches. A signed index is refused with
more than one worker: each process would number its own index versions, and a client would see them go backwards.

On plain HTTP, uvicorn runs :class:`~signery.registry.sendfile.SendfileHttpProtocol`, so downloads go out with
``os.sendfile``. Once the application started (the catalogue loaded), the objects alive are frozen out of the
garbage collector's reach (:func:`gc.freeze`): the catalogue of 10,000 versions is long-lived, and a full
collection walking it on the request path would cost tens of milliseconds of tail latency.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ..errors import ConfigError
from ..keys import Signer
from ..service.runner import DEFAULT_SWITCH_INTERVAL, MAX_WORKERS, Listen, supervise
from .settings import RegistrySettings

WORKER_STARTUP_SECONDS = 600.0  # loading a large catalogue takes a while; a worker exiting sooner failed to start


def app_for(settings: RegistrySettings, *, index_signer: Signer | None = None) -> FastAPI:
    """The application a serving process runs, signing its index with ``index_signer`` (the operator's index key)."""
    from .app import create_app

    sys.setswitchinterval(DEFAULT_SWITCH_INTERVAL)
    app = create_app(settings, index_signer=index_signer)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(the_app: Any) -> AsyncIterator[Any]:
        async with inner(the_app) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan
    return app


def uvicorn_config(app: Any, listen: Listen) -> Any:
    """uvicorn's configuration for ``app`` on ``listen``: the sendfile protocol on plain HTTP."""
    import uvicorn

    from .sendfile import SendfileHttpProtocol

    options = listen.uvicorn_options()
    if listen.tls is None and hasattr(os, "sendfile"):
        options["http"] = SendfileHttpProtocol
    return uvicorn.Config(app, **options)


def serve(
    settings: RegistrySettings,
    *,
    listen: Listen,
    workers: int = 1,
    index_signer: Signer | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, in this process (``workers=1``) or in ``workers`` worker processes.

    Raises:
        ConfigError: bad arguments, a signed index with several workers, the port cannot be listened on.
        EnvironmentFailure: a worker process failed to start.
    """
    import uvicorn

    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be between 1 and {MAX_WORKERS}", subject="workers")
    if workers > 1 and index_signer is not None:
        raise ConfigError(
            "a signed index (--index-key) needs a single worker: each process would number its own versions",
            subject="workers",
        )
    if workers == 1:
        app = app_for(settings, index_signer=index_signer)
        if announce is not None:
            announce(f"{listen.url} (1 worker)")
        uvicorn.Server(uvicorn_config(app, listen)).run()
        return
    if announce is not None:
        announce(f"{listen.url} ({workers} workers)")
    _supervise(settings, listen, workers)


def _worker(settings: RegistrySettings, listen: Listen, sock: socket.socket) -> None:
    """One worker process: uvicorn on its listening socket."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app_for(settings), listen)).run(sockets=[sock])


def _supervise(settings: RegistrySettings, listen: Listen, workers: int) -> None:
    """The registry's worker processes, under the signing service's one supervisor."""
    supervise(
        _worker,
        lambda sock: (settings, listen, sock),
        listen=listen,
        workers=workers,
        name="signery-registry",
        what="a registry worker process",
        startup_seconds=WORKER_STARTUP_SECONDS,
    )

__all__ = ["app_for", "serve", "uvicorn_config"]
