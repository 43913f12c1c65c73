"""Reads: search, package and version indexes, downloads (ETag, Range) and detached signatures."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ...errors import MalformedError, NotFoundError
from ..blobs import CorruptBlobError
from ..deps import StoreDep
from ..index import VersionIndex
from ..naming import Version, check_name
from ..schemas import ErrorBody, PackagePublic, VersionPublic
from ..store import RegistryStore

router = APIRouter(prefix="/api/packages", tags=["packages"])

CACHE_SIZE = 4096  # published versions are immutable, so their download facts can be cached; bounded memory
WHOLE_READ_LIMIT = 4 << 20  # blobs up to this size are read in one call and sent in one message (the common case)
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (400, 404, 500)}


class _BlobResponse(FileResponse):
    chunk_size = 1 << 20  # a 1 MiB package in one read: one thread hop per download instead of sixteen


class VersionCache:
    """name@version -> index, for downloads. Signatures can be added later, so only package facts are used."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], VersionIndex] = OrderedDict()

    async def get(self, store: RegistryStore, name: str, version: str) -> VersionIndex:
        key = (check_name(name).lower(), Version(version).key)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        index = await run_in_threadpool(store.get_version, name, version)
        self._items[key] = index
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return index


@router.get("", response_model=list[PackagePublic], responses=_ERRORS)
async def search(store: StoreDep, q: str = Query(default="", max_length=128)) -> list[dict[str, Any]]:
    """Packages whose name contains ``q`` (case-insensitive), with their latest version and signature presence."""
    return [p.to_dict() for p in await run_in_threadpool(store.search, q)]


@router.get("/{name}", response_model=PackagePublic, responses=_ERRORS)
async def get_package(name: str, store: StoreDep) -> dict[str, Any]:
    return (await run_in_threadpool(store.get_package, name)).to_dict()


@router.get("/{name}/{version}", response_model=VersionPublic, responses=_ERRORS)
async def get_version(name: str, version: str, store: StoreDep) -> dict[str, Any]:
    """One version: ``sha256``, ``size``, ``download_path``, ``signature_path`` and every detached signature."""
    return (await run_in_threadpool(store.get_version, name, version)).to_dict()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or any(t.strip().removeprefix("W/") == etag for t in header.split(","))


@router.get("/{name}/{version}/download", responses={**_ERRORS, 206: {}, 304: {}, 416: {}})
async def download(name: str, version: str, request: Request, store: StoreDep) -> Response:
    """The package bytes. Strong ``ETag`` (the sha256), ``Range`` requests, ``If-None-Match``."""
    cache: VersionCache = request.app.state.version_cache
    index = await cache.get(store, name, version)
    return await _serve_blob(request, store, index.sha256, index.size, index.filename)


@router.get("/{name}/{version}/signatures/{filename}", responses={**_ERRORS, 304: {}})
async def signature(name: str, version: str, filename: str, request: Request, store: StoreDep) -> Response:
    """One detached signature, as the opaque bytes that were published."""
    index = await run_in_threadpool(store.get_version, name, version)
    for sig in index.signatures:
        if sig.filename == filename:
            return await _serve_blob(request, store, sig.sha256, sig.size, sig.filename)
    raise NotFoundError(f"{index.ref} has no signature named {filename!r}", subject=filename)


async def _serve_blob(request: Request, store: RegistryStore, sha256: str, size: int, filename: str) -> Response:
    etag = f'"{sha256}"'
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"etag": etag})
    path = store.blobs.open_checked(sha256, size=size)
    if not filename.isascii():
        raise MalformedError("stored file name is not ASCII", subject=filename)
    headers = {"etag": etag, "cache-control": "public, max-age=31536000, immutable", "x-content-sha256": sha256}
    if size <= WHOLE_READ_LIMIT and "range" not in request.headers:
        # Read inline and send once: a few MiB from the page cache take well under a millisecond, less than the
        # thread hop that would otherwise be needed, and under load the hops are what stretch the tail latency.
        headers["content-disposition"] = f'attachment; filename="{filename}"'
        headers["accept-ranges"] = "bytes"
        body = _read_exact(path, size)
        return Response(body, media_type="application/octet-stream", headers=headers)
    return _BlobResponse(path, media_type="application/octet-stream", filename=filename, headers=headers)


def _read_exact(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(size + 1)
    if len(data) != size:  # changed between the size check and the read
        raise CorruptBlobError(f"blob {path.name} has {len(data)} bytes on disk, {size} recorded", subject=path.name)
    return data
