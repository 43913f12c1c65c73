"""The Elastic Package Registry API under ``/elastic``, as Kibana Fleet calls it (``xpack.fleet.registryUrl``).

Routes and semantics follow elastic/package-registry: ``/search`` (filters ``package``, ``kibana.version``,
``agent.version``, ``prerelease``, ``all``, ``category``, ``type``, ``capabilities``, ``spec.min``/``spec.max``;
the newest satisfying version per name unless ``all=true``; ``[]`` for nothing), ``/categories``,
``/package/{name}/{version}/`` (the manifest fields Kibana reads, ``download``, ``signature_path``), the zip at
``/epr/{name}/{name}-{version}.zip``, its armored ``.zip.sig`` (the Kibana key's signature first, see
:mod:`signery.registry.hosts`) and ``/package/{name}/{version}/{file}`` for README, icons and screenshots.
Names are ``[a-z0-9_]+`` and versions strict semver (400 otherwise), as EPR's routes have them.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ...errors import MalformedError, NotFoundError
from ..catalog import Catalog, CatalogEntry
from ..deps import StoreDep
from ..naming import Version
from .packages import _serve_blob

router = APIRouter(prefix="/elastic", tags=["elastic"])

KIND = "elastic"
MAX_FILE_SIZE = 16 << 20  # README, icons, screenshots; a bigger "asset" is not one Kibana renders
RESPONSE_CACHE = 512  # distinct /search and /categories queries remembered per catalogue version
_NAME = re.compile(r"[a-z0-9_]+")
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
# The BasePackage fields /search returns (packages/package.go), copied from manifest.yml when present.
BASE_FIELDS = (
    "name",
    "title",
    "version",
    "release",
    "description",
    "type",
    "icons",
    "policy_templates",
    "conditions",
    "owner",
    "categories",
    "format_version",
    "source",
    "discovery",
)
CATEGORY_TITLES = {
    "aws": "AWS",
    "azure": "Azure",
    "cloud": "Cloud",
    "config_management": "Config management",
    "containers": "Containers",
    "crm": "CRM",
    "custom": "Custom",
    "datastore": "Datastore",
    "elastic_stack": "Elastic Stack",
    "google_cloud": "Google Cloud",
    "kubernetes": "Kubernetes",
    "monitoring": "Monitoring",
    "network": "Network",
    "observability": "Observability",
    "os_system": "OS & System",
    "productivity": "Productivity",
    "security": "Security",
    "threat_intel": "Threat intelligence",
    "web": "Web",
}


# -- semver constraints (Masterminds/semver, as EPR matches conditions.kibana.version) ---------------------------

_TERM = re.compile(
    r"\s*(\^|~>|~|>=|<=|!=|>|<|=)?\s*v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(-[0-9A-Za-z.-]+)?"
)
Triple = tuple[int, int, int]


def _wild(part: str | None) -> bool:
    return part is None or part in ("x", "X", "*")


def _term_ok(op: str, parts: tuple[str | None, str | None, str | None], v: Triple) -> bool:
    major, minor, patch = parts
    if _wild(major):
        return op in ("", "=", ">=", "<=", "^", "~", "~>")
    lo = (int(major or 0), 0 if _wild(minor) else int(minor or 0), 0 if _wild(patch) else int(patch or 0))
    if op in ("", "="):
        if _wild(minor):
            return v[0] == lo[0]
        if _wild(patch):
            return v[:2] == lo[:2]
        return v == lo
    if op == "!=":
        return v != lo
    if op == ">=":
        return v >= lo
    if op == ">":
        if _wild(minor):
            return v[0] > lo[0]
        if _wild(patch):
            return v[:2] > lo[:2]
        return v > lo
    if op == "<=":
        if _wild(minor):
            return v[0] <= lo[0]
        if _wild(patch):
            return v[:2] <= lo[:2]
        return v <= lo
    if op == "<":
        return v < lo
    if op == "^":
        if lo[0] > 0 or _wild(minor):
            hi = (lo[0] + 1, 0, 0)
        elif lo[1] > 0 or _wild(patch):
            hi = (0, lo[1] + 1, 0)
        else:
            hi = (0, 0, lo[2] + 1)
        return lo <= v < hi
    # "~" and "~>": the minor is fixed when given, the major otherwise
    hi = (lo[0] + 1, 0, 0) if _wild(minor) else (lo[0], lo[1] + 1, 0)
    return lo <= v < hi


def constraint_matches(constraint: str, version: str) -> bool:
    """Whether ``version`` (``x.y.z``) satisfies ``constraint`` (``^8.0.0 || >=7.17.0 <8.0.0``, ``~8.1``, ``8.x``).

    Raises:
        MalformedError: a constraint that does not parse.
    """
    m = _SEMVER.fullmatch(version.strip())
    if m is None:
        raise MalformedError(f"not a version: {version!r}", subject=version)
    v = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    for alternative in constraint.split("||"):
        text = alternative.replace(",", " ").strip()
        if not text:
            continue
        pos, ok = 0, True
        while pos < len(text):
            t = _TERM.match(text, pos)
            if t is None or t.end() == pos:
                raise MalformedError(f"not a version constraint: {constraint!r}", subject=constraint)
            ok = ok and _term_ok(t.group(1) or "", (t.group(2), t.group(3), t.group(4)), v)
            pos = t.end()
            while pos < len(text) and text[pos] == " ":
                pos += 1
        if ok:
            return True
    return False


# -- the filter (packages/packages.go Filter.Apply) -------------------------------------------------------------


def _condition(doc: dict[str, Any], *path: str) -> Any:
    node: Any = doc.get("conditions")
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key) if key in node else node.get(".".join(path))
    return node


def _release(entry: CatalogEntry) -> str:
    release = entry.doc.get("release")
    if isinstance(release, str) and release:
        return release
    return "beta" if entry.parsed.prerelease else "ga"


def _categories(entry: CatalogEntry, *, policy_templates: bool) -> list[str]:
    cats = [c for c in entry.doc.get("categories") or [] if isinstance(c, str)]
    if policy_templates:
        for pt in entry.doc.get("policy_templates") or []:
            if isinstance(pt, dict):
                cats += [c for c in pt.get("categories") or [] if isinstance(c, str) and c not in cats]
    return cats


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _spec(value: str | None, what: str) -> tuple[int, int] | None:
    if not value:
        return None
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", value)
    if m is None:
        raise MalformedError(f"invalid {what} {value!r} (major.minor expected)", subject=what)
    return int(m.group(1)), int(m.group(2))


class Query:
    """The EPR query parameters, parsed once (unknown parameters are ignored, as EPR does)."""

    def __init__(self, params: dict[str, str]) -> None:
        self.package = params.get("package") or None
        self.prerelease = _flag(params.get("prerelease")) or _flag(params.get("experimental"))
        self.all = _flag(params.get("all"))
        self.category = params.get("category") or None
        self.type = params.get("type") or None
        self.kibana = (params.get("kibana.version") or "").removesuffix("-SNAPSHOT") or None
        self.agent = (params.get("agent.version") or "").removesuffix("-SNAPSHOT") or None
        caps = params.get("capabilities")
        self.capabilities = {c for c in caps.split(",") if c} if caps else None
        self.spec_min = _spec(params.get("spec.min"), "spec.min")
        self.spec_max = _spec(params.get("spec.max"), "spec.max")
        self.policy_templates = _flag(params.get("include_policy_templates"))
        for what, v in (("kibana.version", self.kibana), ("agent.version", self.agent)):
            if v is not None and _SEMVER.fullmatch(v) is None:
                raise MalformedError(f"invalid {what} {v!r}", subject=what)

    def keeps(self, e: CatalogEntry) -> bool:
        if not self.prerelease and (e.parsed.prerelease or _release(e) == "experimental"):
            return False
        if self.package is not None and e.name != self.package:
            return False
        if self.type is not None and e.doc.get("type", "integration") != self.type:
            return False
        for wanted, path in ((self.kibana, ("kibana", "version")), (self.agent, ("agent", "version"))):
            constraint = _condition(e.doc, *path)
            if wanted is not None and isinstance(constraint, str) and constraint.strip():
                try:
                    if not constraint_matches(constraint, wanted):
                        return False
                except MalformedError:
                    return False
        if self.capabilities is not None:
            needed = _condition(e.doc, "elastic", "capabilities")
            if isinstance(needed, list) and not set(map(str, needed)) <= self.capabilities:
                return False
        if self.spec_min is not None or self.spec_max is not None:
            spec = _spec(str(e.doc.get("format_version") or "0.0"), "format_version")
            assert spec is not None
            if (self.spec_min is not None and spec < self.spec_min) or (
                self.spec_max is not None and spec > self.spec_max
            ):
                return False
        return True

    def apply(self, entries: list[CatalogEntry], *, category: bool = True) -> list[CatalogEntry]:
        """Filtered, the newest per name unless ``all``, then by category (EPR's order of operations)."""
        out: list[CatalogEntry] = []
        last = None
        for e in entries:  # by name, newest first
            if self.package is not None and e.name != self.package:
                continue
            if not self.all and e.name == last:
                continue
            if self.keeps(e):
                out.append(e)
                last = e.name
        if category and self.category is not None:
            out = [e for e in out if self.category in _categories(e, policy_templates=True)]
        return out


# -- rendering --------------------------------------------------------------------------------------------------


def _paths(e: CatalogEntry) -> tuple[str, str]:
    return f"/package/{e.name}/{e.version}", f"/epr/{e.name}/{e.name}-{e.version}.zip"


def _with_paths(items: Any, base: str) -> Any:
    if not isinstance(items, list):
        return items
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("src"), str):
            item = {**item, "path": f"{base}/{item['src'].lstrip('/')}"}
        out.append(item)
    return out


def base_package(catalog: Catalog, e: CatalogEntry) -> dict[str, Any]:
    cached = e.cache.get("elastic.base")
    if cached is not None:
        return dict(cached)
    path, download = _paths(e)
    doc: dict[str, Any] = {k: e.doc[k] for k in BASE_FIELDS if k in e.doc}
    doc.update(name=e.name, version=e.version, release=_release(e), type=e.doc.get("type", "integration"))
    doc.setdefault("title", e.name)
    doc.setdefault("description", "")
    doc["download"] = download
    doc["path"] = path
    if "icons" in doc:
        doc["icons"] = _with_paths(doc["icons"], path)
    if catalog.signature_forms(e).elastic is not None:
        doc["signature_path"] = f"{download}.sig"
    e.cache["elastic.base"] = doc
    return dict(doc)


def package_info(catalog: Catalog, e: CatalogEntry, files: list[str]) -> dict[str, Any]:
    path, _ = _paths(e)
    doc: dict[str, Any] = {k: v for k, v in e.doc.items() if isinstance(k, str)}
    doc.update(base_package(catalog, e))
    if "screenshots" in doc:
        doc["screenshots"] = _with_paths(doc["screenshots"], path)
    if "docs/README.md" in files:
        doc["readme"] = f"{path}/docs/README.md"
    doc["assets"] = [f"{path}/{f}" for f in files]
    return doc


def _json(data: Any) -> Response:
    return Response(json.dumps(data, separators=(",", ":")).encode(), media_type="application/json")


class ResponseCache:
    """Encoded answers by (catalogue version, path, query): repeated searches cost a dictionary look-up."""

    def __init__(self, size: int = RESPONSE_CACHE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()

    def get(self, key: tuple[int, str, str]) -> bytes | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: tuple[int, str, str], body: bytes) -> None:
        self._items[key] = body
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def _cache(request: Request) -> ResponseCache:
    cache: ResponseCache = request.app.state.elastic_cache
    return cache


def _check(name: str, version: str) -> None:
    if not _NAME.fullmatch(name):
        raise MalformedError(f"invalid package name {name!r}", subject=name)
    if not _SEMVER.fullmatch(version):
        raise MalformedError("invalid package version", subject=version)


def _find(catalog: Catalog, name: str, version: str) -> CatalogEntry:
    _check(name, version)
    e = catalog.find(KIND, name, Version(version))
    if e is not None:
        return e
    raise NotFoundError(f"package {name} version {version} not found", subject=f"{name}-{version}")


async def _cached(request: Request, build: Any) -> Response:
    """The answer to this query, from the cache (the fast path answers hits before they get here) or ``build``."""
    catalog = await _catalog(request).current()
    key = (catalog.version, request.url.path, request.scope["query_string"].decode("latin-1"))
    body = _cache(request).get(key)
    if body is None:
        built = build(catalog, Query(dict(request.query_params)))
        body = built if isinstance(built, bytes) else json.dumps(built, separators=(",", ":")).encode()
        _cache(request).put(key, body)
    return Response(body, media_type="application/json")


def _candidates(catalog: Catalog, q: Query) -> list[CatalogEntry]:
    """The versions a query can keep: one package's (a dictionary look-up) or every one."""
    return catalog.named(KIND, q.package) if q.package is not None else catalog.of_kind(KIND)


def _base_json(catalog: Catalog, e: CatalogEntry) -> bytes:
    """:func:`base_package` encoded, once per version: a search answer is these joined."""
    encoded = e.cache.get("elastic.base.json")
    if encoded is None:
        encoded = e.cache["elastic.base.json"] = json.dumps(base_package(catalog, e), separators=(",", ":")).encode()
    return bytes(encoded)


@router.get("/search")
async def search(request: Request) -> Response:
    """EPR ``/search``: BasePackage entries, the newest satisfying version per name unless ``all=true``."""

    def build(catalog: Catalog, q: Query) -> bytes:
        return b"[" + b",".join([_base_json(catalog, e) for e in q.apply(_candidates(catalog, q))]) + b"]"

    return await _cached(request, build)


@router.get("/categories")
async def categories(request: Request) -> Response:
    """EPR ``/categories``: ``[{"id", "title", "count"}]`` over the packages the filters keep."""

    def build(catalog: Catalog, q: Query) -> list[dict[str, Any]]:
        counts: dict[str, int] = {}
        for e in q.apply(_candidates(catalog, q), category=False):
            for c in _categories(e, policy_templates=q.policy_templates):
                counts[c] = counts.get(c, 0) + 1
        return [
            {"id": c, "title": CATEGORY_TITLES.get(c, c.replace("_", " ").capitalize()), "count": n}
            for c, n in sorted(counts.items())
        ]

    return await _cached(request, build)


def _zip_files(store: Any, e: CatalogEntry) -> list[str]:
    """The files under the package root of the zip, relative to it (``docs/README.md``, ``img/icon.svg``)."""
    from ...archive import ZipArchive

    files = e.cache.get("elastic.files")
    if files is None:
        prefix = f"{e.root}/" if e.root else ""
        with ZipArchive.open(store.blobs.path(e.index.sha256)) as archive:
            files = [f.name[len(prefix) :] for f in archive.files if f.name.startswith(prefix)]
        e.cache["elastic.files"] = files
    return list(files)


@router.get("/package/{name}/{version}/")
async def package(name: str, version: str, request: Request, store: StoreDep) -> Response:
    """EPR ``/package/{name}/{version}/``: the manifest, ``download``, ``signature_path``, ``readme``, assets."""
    catalog = await _catalog(request).current()
    e = _find(catalog, name, version)
    files = await run_in_threadpool(_zip_files, store, e)
    return _json(package_info(catalog, e, files))


@router.get("/epr/{name}/{filename}")
async def download(name: str, filename: str, request: Request, store: StoreDep) -> Response:
    """The zip, byte for byte as published (``name-version/`` inside), or its armored ``.zip.sig``."""
    signature = filename.endswith(".zip.sig")
    stem = filename.removesuffix(".sig") if signature else filename
    if not stem.startswith(f"{name}-") or not stem.endswith(".zip"):
        raise NotFoundError(f"no file {filename!r} for {name}", subject=filename)
    catalog = await _catalog(request).current()
    e = _find(catalog, name, stem[len(name) + 1 : -len(".zip")])
    if signature:
        sig = catalog.signature_forms(e).elastic
        if sig is None:
            raise NotFoundError(f"{name}-{e.version} has no OpenPGP signature", subject=filename)
        return Response(sig, media_type="application/pgp-signature", headers={"cache-control": "public, max-age=60"})
    return await _serve_blob(request, store, e.index.sha256, e.index.size, filename)


@router.get("/package/{name}/{version}/{file:path}")
async def package_file(name: str, version: str, file: str, request: Request, store: StoreDep) -> Response:
    """A file of the package (README, changelog, icons, screenshots), read from the stored zip."""
    from ...archive import ZipArchive

    catalog = await _catalog(request).current()
    e = _find(catalog, name, version)
    files = await run_in_threadpool(_zip_files, store, e)
    if file not in files:
        raise NotFoundError(f"{name}-{version} has no file {file!r}", subject=file)

    def read() -> bytes:
        member = f"{e.root}/{file}" if e.root else file
        with ZipArchive.open(store.blobs.path(e.index.sha256)) as archive:
            entry = archive.get(member)
            if entry is None:
                raise NotFoundError(f"{name}-{version} has no file {file!r}", subject=file)
            return archive.read(entry, max_size=MAX_FILE_SIZE)

    media = mimetypes.guess_type(file)[0] or "application/octet-stream"
    if file.endswith(".md"):
        media = "text/markdown; charset=utf-8"
    body = await run_in_threadpool(read)
    return Response(body, media_type=media, headers={"cache-control": "public, max-age=31536000, immutable"})


__all__ = ["Query", "ResponseCache", "constraint_matches", "router"]
