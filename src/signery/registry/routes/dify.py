"""The Dify marketplace API under ``/dify`` (``MARKETPLACE_API_URL``), as the Dify API and the daemon's slim CLI
call it: the two download forms (each with ``HEAD``), ``POST /api/v1/plugins/batch``, the install-count stub and
``GET /api/v1/dist/plugins/manifest.json``.

A Dify plugin is ``org/name`` (``org`` is the manifest's ``author``), its versions may have four numbers, and its
unique identifier is ``org/name:version@checksum`` with the checksum the daemon computes over exactly the bytes
served (:func:`signery.registry.hosts.dify_checksum`). The bytes are served as published: the signature Dify
verifies is embedded in them.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import MalformedError, NotFoundError
from ..catalog import Catalog, CatalogEntry
from ..deps import StoreDep
from ..hosts import dify_identifier
from ..naming import Version
from .packages import _serve_blob

router = APIRouter(prefix="/dify", tags=["dify"])

KIND = "dify"
MAX_BATCH = 256  # plugin ids per /batch request; Dify sends one per installed plugin
# pkg/entities/plugin_entities/identity.go
IDENTIFIER = re.compile(
    r"(?:(?P<org>[a-z0-9_-]{1,64})/)?(?P<name>[a-z0-9_-]{1,255}):(?P<version>\d{1,4}(?:\.\d{1,4}){1,3}(?:-\w{1,16})?)"
    r"@(?P<checksum>[a-f0-9]{32,64})"
)


def identifier(e: CatalogEntry) -> str | None:
    if e.author is None or e.dify_checksum is None:
        return None
    return dify_identifier(e.author, e.name, e.version, e.dify_checksum)


def _latest(catalog: Catalog, org: str, name: str) -> CatalogEntry | None:
    candidates = [e for e in catalog.of_kind(KIND) if e.author == org and e.name == name and identifier(e)]
    releases = [e for e in candidates if not e.parsed.prerelease] or candidates
    return max(releases, key=lambda e: e.parsed) if releases else None


def _find(catalog: Catalog, org: str, name: str, version: str) -> CatalogEntry:
    wanted = Version.parse(version)
    e = catalog.find(KIND, name, wanted) if wanted is not None else None
    if e is not None and e.author == org and identifier(e):
        return e
    raise NotFoundError(f"plugin {org}/{name}:{version} not found", subject=f"{org}/{name}:{version}")


async def _send(request: Request, store: Any, e: CatalogEntry) -> Response:
    filename = f"{e.author}-{e.name}_{e.version}.difypkg"
    if request.method == "HEAD":
        headers = {
            "content-length": str(e.index.size),
            "content-type": "application/octet-stream",
            "etag": f'"{e.index.sha256}"',
            "content-disposition": f'attachment; filename="{filename}"',
        }
        return Response(status_code=200, headers=headers)
    return await _serve_blob(request, store, e.index.sha256, e.index.size, filename)


@router.head("/api/v1/plugins/{org}/{name}/{version}/download", operation_id="dify_download_head")
@router.get("/api/v1/plugins/{org}/{name}/{version}/download")
async def download(org: str, name: str, version: str, request: Request, store: StoreDep) -> Response:
    """``GET /api/v1/plugins/{org}/{name}/{version}/download``: the ``.difypkg`` bytes; 404 for none."""
    catalog: Catalog = await request.app.state.catalog.current()
    return await _send(request, store, _find(catalog, org, name, version))


@router.head("/api/v1/plugins/download", operation_id="dify_download_by_identifier_head")
@router.get("/api/v1/plugins/download")
async def download_by_identifier(unique_identifier: str, request: Request, store: StoreDep) -> Response:
    """``GET /api/v1/plugins/download?unique_identifier=org/name:version@checksum``: 404 unless the checksum is
    that of the bytes this registry serves."""
    m = IDENTIFIER.fullmatch(unique_identifier)
    if m is None or m.group("org") is None:
        raise NotFoundError(f"no plugin {unique_identifier!r}", subject=unique_identifier[:200])
    catalog: Catalog = await request.app.state.catalog.current()
    e = _find(catalog, m.group("org"), m.group("name"), m.group("version"))
    if e.dify_checksum != m.group("checksum"):
        raise NotFoundError(f"no plugin {unique_identifier!r}", subject=unique_identifier[:200])
    return await _send(request, store, e)


def _i18n(value: Any, fallback: str) -> dict[str, str]:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        out = {str(k): v for k, v in value.items()}
        out.setdefault("en_US", next(iter(out.values()), fallback))
        return out
    return {"en_US": value if isinstance(value, str) else fallback}


def declaration(e: CatalogEntry, ident: str) -> dict[str, Any]:
    """A ``MarketplacePluginDeclaration`` (api/core/plugin/entities/marketplace.py) from the manifest."""
    doc = e.doc
    resource = doc.get("resource") if isinstance(doc.get("resource"), dict) else {"memory": 0}
    out: dict[str, Any] = {
        "name": e.name,
        "org": e.author,
        "plugin_id": f"{e.author}/{e.name}",
        "icon": doc.get("icon") if isinstance(doc.get("icon"), str) else "",
        "label": _i18n(doc.get("label"), e.name),
        "brief": _i18n(doc.get("description"), ""),
        "resource": resource,
        "latest_version": e.version,
        "latest_package_identifier": ident,
        "status": "active",
        "deprecated_reason": "",
        "alternative_plugin_id": "",
    }
    return out


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    plugin_ids: list[str] = Field(default_factory=list, max_length=MAX_BATCH)


class InstallCount(BaseModel):
    model_config = ConfigDict(extra="ignore")
    unique_identifier: str = Field(default="", max_length=512)


@router.post("/api/v1/plugins/batch")
async def batch(body: BatchRequest, request: Request) -> dict[str, Any]:
    """``POST /api/v1/plugins/batch {"plugin_ids": ["org/name", ...]}``: the latest version of each one known."""
    catalog: Catalog = await request.app.state.catalog.current()
    plugins = []
    for plugin_id in body.plugin_ids:
        org, _, name = plugin_id.partition("/")
        if not org or not name:
            raise MalformedError(f"invalid plugin id {plugin_id!r}; org/name expected", subject=plugin_id[:200])
        e = _latest(catalog, org, name)
        ident = identifier(e) if e is not None else None
        if e is not None and ident is not None:
            plugins.append(declaration(e, ident))
    return {"code": 0, "msg": "success", "data": {"plugins": plugins}}


@router.post("/api/v1/stats/plugins/install_count")
async def install_count(body: InstallCount) -> dict[str, Any]:
    """Dify reports installs here and raises on a non-2xx answer; nothing is counted."""
    return {"code": 0, "msg": "success", "data": {}}


@router.get("/api/v1/dist/plugins/manifest.json")
async def dist_manifest(request: Request) -> dict[str, Any]:
    """``{"plugins": [{org, name, latest_version, latest_package_identifier, latest_package_url}]}``."""
    catalog: Catalog = await request.app.state.catalog.current()
    base = str(request.base_url).rstrip("/")
    public = request.app.state.store.settings.public_url
    if public:
        base = public.rstrip("/")
    names = sorted({(e.author, e.name) for e in catalog.of_kind(KIND) if e.author is not None})
    out = []
    for org, name in names:
        assert org is not None
        e = _latest(catalog, org, name)
        ident = identifier(e) if e is not None else None
        if e is None or ident is None:
            continue
        out.append(
            {
                "org": org,
                "name": name,
                "latest_version": e.version,
                "latest_package_identifier": ident,
                "latest_package_url": f"{base}/dify/api/v1/plugins/{org}/{name}/{e.version}/download",
            }
        )
    return {"plugins": out}


__all__ = ["IDENTIFIER", "declaration", "identifier", "router"]
