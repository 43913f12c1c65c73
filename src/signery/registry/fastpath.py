"""A lean ASGI front for the host protocols' hot routes: package downloads and repeated EPR searches.

FastAPI's routing, dependency solving and response classes cost more than sending a cached answer does. This
front answers, from the in-memory catalogue (:mod:`signery.registry.catalog`) and with headers computed once per
version, the requests that dominate a registry's traffic:

- ``GET /elastic/epr/{name}/{name}-{version}.zip`` and its ``.zip.sig``;
- ``GET /mattermost/plugins/{id}/{version}/{file}``;
- ``GET /dify/api/v1/plugins/{org}/{name}/{version}/download``;
- ``GET /elastic/search`` and ``/elastic/categories`` whose answer is already cached for this catalogue version.

A package is sent with ``http.response.pathsend`` where the server offers it (:mod:`signery.registry.sendfile`:
``os.sendfile``, no copy through Python), else read whole and sent in one message as the route does. Anything
else goes, untouched, to the FastAPI application: other routes and methods, conditional and ``Range`` requests,
names that do not resolve (so errors are rendered exactly as the routes render them), a blob that is not the size
recorded, and a search answer not computed yet (the route computes and caches it).
"""

from __future__ import annotations

import os
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import SigneryError
from .catalog import Catalog, CatalogEntry
from .naming import Version
from .sendfile import PATHSEND
from .settings import RegistrySettings

IMMUTABLE = b"public, max-age=31536000, immutable"
WHOLE_READ_LIMIT = 4 << 20  # without pathsend, larger blobs go to the route (FileResponse, in chunks)
_OCTETS = b"application/octet-stream"
_JSON = b"application/json"
_PASS_HEADERS = frozenset({b"range", b"if-none-match"})  # the route's conditional and partial answers
RESOLVED = 8192  # download paths remembered (per catalogue version) with their answer, skipping the parsing


_Blob = tuple[list[tuple[bytes, bytes]], str, int]  # the response headers, the blob's path, its size


class RegistryFastPath:
    """Serve plain downloads and cached searches directly; pass everything else to ``app``."""

    def __init__(self, app: ASGIApp, *, catalog: Catalog, settings: RegistrySettings, search_cache: Any) -> None:
        self.app, self.catalog, self.search_cache = app, catalog, search_cache
        self.elastic = "elastic" in settings.protocols
        self.mattermost = "mattermost" in settings.protocols
        self.dify = "dify" in settings.protocols
        self._resolved: dict[str, tuple[int, _Blob]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        hit = self._resolved.get(path)
        if hit is not None:
            catalog = await self.catalog.current()
            if hit[0] == catalog.version and await self._send_blob(scope, send, hit[1]):
                return
        handled = False
        if path.startswith("/elastic/"):
            if self.elastic:
                if path == "/elastic/search" or path == "/elastic/categories":
                    handled = await self._cached(scope, send)
                elif path.startswith("/elastic/epr/"):
                    handled = await self._elastic(scope, send, path)
        elif path.startswith("/mattermost/plugins/"):
            if self.mattermost:
                handled = await self._mattermost(scope, send, path)
        elif path.startswith("/dify/api/v1/plugins/") and path.endswith("/download") and self.dify:
            handled = await self._dify(scope, send, path)
        if not handled:
            await self.app(scope, receive, send)

    # -- searches ---------------------------------------------------------------------------------------------

    async def _cached(self, scope: Scope, send: Send) -> bool:
        catalog = await self.catalog.current()
        key = (catalog.version, scope["path"], scope["query_string"].decode("latin-1"))
        body = self.search_cache.get(key)
        if body is None:
            return False
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", _JSON)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True

    # -- downloads --------------------------------------------------------------------------------------------

    async def _elastic(self, scope: Scope, send: Send, path: str) -> bool:
        from .routes.elastic import _NAME, _SEMVER

        parts = path.split("/")
        if len(parts) != 5:
            return False
        name, filename = parts[3], parts[4]
        signature = filename.endswith(".zip.sig")
        stem = filename[: -len(".sig")] if signature else filename
        if not stem.startswith(f"{name}-") or not stem.endswith(".zip"):
            return False
        version = stem[len(name) + 1 : -len(".zip")]
        if not _NAME.fullmatch(name) or not _SEMVER.fullmatch(version):
            return False
        catalog = await self.catalog.current()
        e = catalog.find("elastic", name, Version(version))
        if e is None:
            return False
        if not signature:
            return await self._blob(scope, send, catalog, e, filename)
        cached = e.cache.get("fast.sig")
        if cached is None:
            sig = catalog.signature_forms(e).elastic
            if sig is None:
                return False
            headers = [
                (b"content-length", b"%d" % len(sig)),
                (b"content-type", b"application/pgp-signature"),
                (b"cache-control", b"public, max-age=60"),
            ]
            cached = e.cache["fast.sig"] = (headers, sig)
        await send({"type": "http.response.start", "status": 200, "headers": cached[0]})
        await send({"type": "http.response.body", "body": cached[1]})
        return True

    async def _mattermost(self, scope: Scope, send: Send, path: str) -> bool:
        parts = path.split("/")
        if len(parts) != 6:
            return False
        plugin_id, version, filename = parts[3], parts[4], parts[5]
        try:
            wanted = Version(version)
        except (SigneryError, ValueError):
            return False
        catalog = await self.catalog.current()
        e = catalog.find("mattermost", plugin_id, wanted)
        if e is None or e.index.filename != filename:
            return False
        return await self._blob(scope, send, catalog, e, e.index.filename)

    async def _dify(self, scope: Scope, send: Send, path: str) -> bool:
        from .routes.dify import identifier

        parts = path.split("/")
        if len(parts) != 9:
            return False
        org, name, version = parts[5], parts[6], parts[7]
        wanted = Version.parse(version)
        if wanted is None:
            return False
        catalog = await self.catalog.current()
        e = catalog.find("dify", name, wanted)
        if e is None or e.author != org or not identifier(e):
            return False
        return await self._blob(scope, send, catalog, e, f"{e.author}-{e.name}_{e.version}.difypkg")

    async def _blob(self, scope: Scope, send: Send, catalog: Catalog, e: CatalogEntry, filename: str) -> bool:
        key = f"fast.blob:{filename}"
        cached = e.cache.get(key)
        if cached is None:
            if not filename.isascii() or '"' in filename:
                return False  # the route refuses it, with its error
            sha256, size = e.index.sha256, e.index.size
            headers = [
                (b"content-length", b"%d" % size),
                (b"content-type", _OCTETS),
                (b"etag", f'"{sha256}"'.encode()),
                (b"cache-control", IMMUTABLE),
                (b"x-content-sha256", sha256.encode()),
                (b"content-disposition", f'attachment; filename="{filename}"'.encode()),
                (b"accept-ranges", b"bytes"),
            ]
            cached = e.cache[key] = (headers, str(catalog.store.blobs.path(sha256)), size)
        if len(self._resolved) >= RESOLVED:
            self._resolved.clear()
        self._resolved[scope["path"]] = (catalog.version, cached)
        return await self._send_blob(scope, send, cached)

    async def _send_blob(self, scope: Scope, send: Send, cached: _Blob) -> bool:
        for key, _ in scope["headers"]:
            if key in _PASS_HEADERS:
                return False
        headers, blob, size = cached
        try:
            if os.stat(blob).st_size != size:
                return False  # the route reports the damaged store
        except OSError:
            return False
        pathsend = PATHSEND in scope.get("extensions", ())
        if pathsend:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": PATHSEND, "path": blob})
            return True
        if size > WHOLE_READ_LIMIT:
            return False
        with open(blob, "rb") as fh:
            body = fh.read(size + 1)
        if len(body) != size:
            return False
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True


__all__ = ["RegistryFastPath"]
