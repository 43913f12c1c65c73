"""``GET /api/index``: the registry's signed, expiring, versioned index (see :mod:`signery.registry.signed_index`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ...errors import NotFoundError
from ..catalog import Catalog
from ..signed_index import IndexPublisher

router = APIRouter(prefix="/api", tags=["index"])


@router.get("/index")
async def signed_index(request: Request) -> Response:
    """The index every package version is listed in (name, version, sha256, size, signatures), signed by the
    operator's index key, with a version number that only grows and an expiry. 404 when no index key is set."""
    publisher: IndexPublisher | None = request.app.state.index_publisher
    if publisher is None:
        raise NotFoundError("this registry signs no index (no --index-key)", subject="index")
    catalog: Catalog = await request.app.state.catalog.current()
    packages = [e.index for e in catalog]
    body = await run_in_threadpool(publisher.current, packages)
    return Response(body, media_type="application/json", headers={"cache-control": "no-cache"})
