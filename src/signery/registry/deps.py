"""Dependencies of the registry routes: the store and the authenticated publisher, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from .store import RegistryStore
from .tokens import Publisher


async def get_store(request: Request) -> RegistryStore:  # async: a sync dependency would cost a thread hop
    store: RegistryStore = request.app.state.store
    return store


StoreDep = Annotated[RegistryStore, Depends(get_store)]


async def get_publisher(request: Request, store: StoreDep) -> Publisher:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return await run_in_threadpool(store.authenticate, token.strip() if scheme.lower() == "bearer" else None)


PublisherDep = Annotated[Publisher, Depends(get_publisher)]
