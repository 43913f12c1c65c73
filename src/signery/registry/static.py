"""The immutable download paths of the host protocols as a file tree, for nginx (or any static server) to serve.

A Python route cannot match nginx's ``sendfile`` on 1 MiB downloads. Published bytes never change, so the
registry can lay the download URLs out as files and let nginx serve them, proxying everything else (searches,
package info, publishing) to the registry. With ``RegistrySettings.static_dir`` set, every catalogue refresh
brings the tree up to date:

- ``elastic/epr/<name>/<name>-<version>.zip`` and its armored ``.zip.sig``;
- ``mattermost/plugins/<id>/<version>/<file>``;
- ``dify/api/v1/plugins/<org>/<name>/<version>/download``.

Package files are hard links to the content-addressed blobs (a copy when the tree is on another filesystem);
signature files are written atomically, and rewritten when a signature is added. See ``docs/registry.md`` for the
nginx configuration.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .._internal.files import atomic_write_bytes
from .catalog import Catalog, CatalogEntry
from .naming import check_filename

_SAFE = check_filename  # every path component comes from a validated name, version or file name


def _link(blob: Path, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # several workers may sync the tree at once
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(blob, tmp)
    except OSError:
        shutil.copyfile(blob, tmp)
    os.replace(tmp, target)


def _write(target: Path, data: bytes) -> None:
    try:
        if target.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)


def _paths(e: CatalogEntry) -> list[str]:
    if e.kind == "elastic":
        return [f"elastic/epr/{_SAFE(e.name)}/{_SAFE(f'{e.name}-{e.version}.zip')}"]
    if e.kind == "mattermost":
        return [f"mattermost/plugins/{_SAFE(e.name)}/{_SAFE(e.version)}/{_SAFE(e.index.filename)}"]
    if e.kind == "dify" and e.author:
        return [f"dify/api/v1/plugins/{_SAFE(e.author)}/{_SAFE(e.name)}/{_SAFE(e.version)}/download"]
    return []


def sync_static_tree(catalog: Catalog, root: Path) -> int:
    """Bring the tree under ``root`` up to date with ``catalog``; returns how many files it holds."""
    root = Path(root)
    count = 0
    for e in catalog:
        blob = catalog.store.blobs.path(e.index.sha256)
        for rel in _paths(e):
            _link(blob, root / rel)
            count += 1
            if e.kind == "elastic":
                sig = catalog.signature_forms(e).elastic
                if sig is not None:
                    _write(root / f"{rel}.sig", sig)
                    count += 1
    return count


__all__ = ["sync_static_tree"]
