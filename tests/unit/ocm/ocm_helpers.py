"""Helpers for the OCM tests (a plain module: conftest names are ambiguous across test directories)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from signery.ocm import Descriptor, parse_descriptor, write_component_archive

BLOB = b"this is test data"
BLOB_REF = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def descriptor_doc(name: str = "acme.org/app", version: str = "1.0.0", **component: Any) -> dict[str, Any]:
    comp: dict[str, Any] = {
        "name": name,
        "version": version,
        "provider": "acme.org",
        "repositoryContexts": [],
        "resources": [
            {
                "name": "text",
                "version": version,
                "type": "PlainText",
                "relation": "local",
                "access": {"type": "localBlob", "localReference": BLOB_REF, "mediaType": "text/plain"},
            }
        ],
        "sources": [],
        "componentReferences": [],
    }
    comp.update(component)
    return {"meta": {"schemaVersion": "v2"}, "component": comp}


def make_descriptor(**kw: Any) -> Descriptor:
    return parse_descriptor(json.dumps(descriptor_doc(**kw)).encode())


def make_archive(path: Path, *, tar: bool = False, **kw: Any) -> Path:
    return write_component_archive(path, make_descriptor(**kw), {BLOB_REF: BLOB}, tar=tar)
