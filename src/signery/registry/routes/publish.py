"""Writes: ``POST /api/uploads`` streams bytes to the staging area; ``POST /api/packages`` commits them."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ...errors import MalformedError
from ..blobs import BlobTooLargeError, StagedUpload
from ..deps import PublisherDep, StoreDep
from ..schemas import ErrorBody, PublishRequest, UploadPublic, VersionPublic
from ..settings import STAGING_TTL_SECONDS
from ..store import SignatureUpload

router = APIRouter(prefix="/api", tags=["publish"])

WRITE_BATCH = 1 << 20  # hand the disk 1 MiB at a time: few thread hops, bounded memory per upload
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 413, 422)}


@router.post("/uploads", response_model=UploadPublic, status_code=201, responses=_ERRORS)
async def upload(request: Request, store: StoreDep, _publisher: PublisherDep) -> dict[str, Any]:
    """Stream a package or signature (raw request body) into the staging area; returns its sha256 and size."""
    limit = store.settings.max_upload_size
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedError("invalid Content-Length", subject="Content-Length")
        if int(declared) > limit:
            raise BlobTooLargeError(f"upload of {declared} bytes exceeds the limit of {limit} bytes", subject="upload")
    await run_in_threadpool(store.blobs.clean_staging, older_than=STAGING_TTL_SECONDS)
    staged: StagedUpload = await run_in_threadpool(store.blobs.stage, max_size=limit)
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= WRITE_BATCH:
                await anyio.to_thread.run_sync(staged.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await anyio.to_thread.run_sync(staged.write, bytes(buffer))
        sha256, size = await anyio.to_thread.run_sync(staged.commit)
    except BaseException:
        staged.discard()
        raise
    return {"sha256": sha256, "size": size}


@router.post("/packages", response_model=VersionPublic, status_code=201, responses=_ERRORS)
async def publish(body: PublishRequest, store: StoreDep, publisher: PublisherDep, response: Response) -> dict[str, Any]:
    """Publish staged bytes as name@version (201), or add signatures to an identical existing version (200).

    A name@version is immutable: different bytes for it are refused with 409.
    """
    sigs = [SignatureUpload(filename=s.filename, sha256=s.sha256) for s in body.signatures]
    index, created = await run_in_threadpool(
        lambda: store.publish(
            publisher,
            package_sha256=body.package,
            filename=body.filename,
            signatures=sigs,
            name=body.name,
            version=body.version,
            allow_unverifiable=body.allow_unverifiable,
        )
    )
    response.status_code = 201 if created else 200
    return index.to_dict()
