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


_RESOURCE_YAML = """\
  - name: res-{i:05d}
    version: 1.0.{i}
    type: ociImage
    relation: external
    extraIdentity:
      platform: linux-amd64
    access:
      type: ociArtifact
      imageReference: ghcr.io/acme/images/res-{i:05d}:1.0.{i}@sha256:{hex}
    digest:
      hashAlgorithm: SHA-256
      normalisationAlgorithm: ociArtifactDigest/v1
      value: {hex}
    labels:
    - name: acme.org/build
      value: {{pipeline: nightly, run: {i}, tags: [a, b, c]}}
    - name: acme.org/config
      signing: true
      value:
{pairs}"""
_PAIR = "        key{j:03d}: value {j}\n"


def large_descriptor_yaml(target_bytes: int = (8 << 20) - (64 << 10), signatures: str = "") -> bytes:
    """A v2 descriptor of about ``target_bytes`` (default: just under the 8 MiB limit) listing thousands of
    external resources (OCI artifacts with recorded digests, so verifying reads no blobs), each with a signed
    label holding many small scalars (node-dense, the slow case for a YAML reader); ``signatures`` is appended
    verbatim (a ``signatures:`` block)."""
    head = (
        "meta:\n  schemaVersion: v2\ncomponent:\n  name: acme.org/big\n  version: 1.0.0\n  provider: acme.org\n"
        "  repositoryContexts: []\n  sources: []\n  componentReferences: []\n  resources:\n"
    )
    budget = target_bytes - len(head) - len(signatures)
    base = len(_RESOURCE_YAML.format(i=5000, hex="0" * 64, pairs=""))
    npairs = max(1, (budget // 9_000 - base) // len(_PAIR.format(j=50)))
    pairs = "".join(_PAIR.format(j=j) for j in range(npairs))
    count = max(1, min(9_999, budget // (base + len(pairs))))
    parts = [head]
    for i in range(count):
        hexval = hashlib.sha256(str(i).encode()).hexdigest()
        parts.append(_RESOURCE_YAML.format(i=i, hex=hexval, pairs=pairs))
    parts.append(signatures)
    return "".join(parts).encode()
