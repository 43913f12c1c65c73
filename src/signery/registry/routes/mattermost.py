"""The Mattermost marketplace API under ``/mattermost`` (``PluginSettings.MarketplaceURL``).

The server's only call is ``GET /api/v1/plugins`` with the keys ``MarketplacePluginFilter.ToValues`` sends:
``page``, ``per_page`` (only when above 0; default 100), ``filter``, ``server_version``, ``build_enterprise_ready``,
``enterprise_plugins``, ``cloud``, ``local_only``, ``remote_only``, ``platform``, ``plugin_id`` and
``return_all_versions``. Each entry carries the bundle's ``plugin.json`` as ``manifest`` (never null: the server
dereferences ``manifest.version``), an absolute ``download_url`` and ``signature``, the standard base64 of a binary
OpenPGP signature holding the version's RSA packets (Go's legacy ``x/crypto/openpgp`` reads nothing else).
A bundle with no such signature is not listed: Mattermost verifies every marketplace install and would refuse it.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from ...errors import MalformedError, NotFoundError
from ..catalog import Catalog, CatalogEntry
from ..deps import StoreDep
from ..naming import Version
from .packages import _serve_blob

router = APIRouter(prefix="/mattermost", tags=["mattermost"])

KIND = "mattermost"
DEFAULT_PER_PAGE = 100  # mattermost-marketplace internal/api/plugins.go
MAX_PER_PAGE = 1000


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _int(value: str | None, what: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise MalformedError(f"invalid {what} {value!r}", subject=what) from None


def _field(doc: dict[str, Any], key: str) -> Any:
    """Go's encoding/json: a field matches its key case-insensitively."""
    for k, v in doc.items():
        if isinstance(k, str) and k.lower() == key:
            return v
    return None


def _text(doc: dict[str, Any], key: str) -> str:
    v = _field(doc, key)
    return v if isinstance(v, str) else ""


def _base_url(request: Request) -> str:
    public = request.app.state.store.settings.public_url
    base = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    return base


def entry_json(catalog: Catalog, e: CatalogEntry, base_url: str, signature: bytes) -> dict[str, Any]:
    plugin_id = quote(e.name, safe="")
    version = quote(e.version, safe="")
    filename = quote(e.index.filename, safe="")
    return {
        "homepage_url": _text(e.doc, "homepage_url"),
        "icon_data": "",
        "download_url": f"{base_url}/mattermost/plugins/{plugin_id}/{version}/{filename}",
        "release_notes_url": _text(e.doc, "release_notes_url"),
        "labels": [],
        "hosting": "",
        "author_type": "",
        "release_stage": "production",
        "enterprise": False,
        "signature": base64.b64encode(signature).decode("ascii"),
        "repo_name": "",
        "manifest": e.doc,
        "updated_at": e.index.published_at,
    }


def select(catalog: Catalog, params: dict[str, str]) -> list[tuple[CatalogEntry, bytes]]:
    """The entries the real marketplace's static store would return for ``params`` (its filter, order, paging)."""
    plugin_id = params.get("plugin_id") or None
    all_versions = _flag(params.get("return_all_versions"))
    text = (params.get("filter") or "").strip().lower()
    page = _int(params.get("page"), "page", 0)
    per_page = _int(params.get("per_page"), "per_page", DEFAULT_PER_PAGE)
    if page < 0 or per_page <= 0 or per_page > MAX_PER_PAGE:
        raise MalformedError("invalid page or per_page", subject="per_page")
    server = Version.parse(params.get("server_version") or "")
    found: list[tuple[CatalogEntry, bytes]] = []
    seen: set[str] = set()
    for e in catalog.of_kind(KIND):  # by name, newest version first
        if plugin_id is not None and e.name != plugin_id:
            continue
        if not all_versions and e.name in seen:
            continue
        minimum = Version.parse(_text(e.doc, "min_server_version"))
        if server is not None and minimum is not None and server < minimum:
            continue
        if text and not any(text in _text(e.doc, k).lower() for k in ("id", "name", "description")):
            continue
        signature = catalog.signature_forms(e).mattermost
        if signature is None:
            continue  # Mattermost verifies every marketplace install: an entry it cannot verify is no entry
        seen.add(e.name)
        found.append((e, signature))
    found.sort(key=lambda item: (_text(item[0].doc, "name").lower() or item[0].name.lower(), item[0].name.lower()))
    return found[page * per_page : (page + 1) * per_page]


@router.get("/api/v1/plugins")
async def plugins(request: Request) -> list[dict[str, Any]]:
    """``GET /api/v1/plugins``: marketplace entries, ``[]`` when none match."""
    catalog: Catalog = await request.app.state.catalog.current()
    base = _base_url(request)
    return [entry_json(catalog, e, base, sig) for e, sig in select(catalog, dict(request.query_params))]


@router.get("/plugins/{plugin_id}/{version}/{filename}")
async def bundle(plugin_id: str, version: str, filename: str, request: Request, store: StoreDep) -> Response:
    """The bundle ``download_url`` names, byte for byte as published."""
    catalog: Catalog = await request.app.state.catalog.current()
    e = catalog.find(KIND, plugin_id, Version(version))
    if e is not None and e.index.filename == filename:
        return await _serve_blob(request, store, e.index.sha256, e.index.size, e.index.filename)
    raise NotFoundError(f"no bundle {plugin_id} {version} {filename}", subject=filename)


__all__ = ["router", "select"]
