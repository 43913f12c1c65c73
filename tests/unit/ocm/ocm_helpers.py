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


# -- the OCM format, as every caller sees it -------------------------------------------------------------------


def trust_of(*keys: Any, **constraints: Any) -> Any:
    """A trust set of these public (or private) keys, named k0, k1..., each with ``constraints``."""
    from signery.trust import Constraints, TrustSet, trusted_key_from_public

    def public(k: Any) -> Any:
        return k.public_key() if hasattr(k, "private_bytes") else k

    return TrustSet(
        trusted_key_from_public(public(k), name=f"k{i}", constraints=Constraints(**constraints))
        for i, k in enumerate(keys)
    )


def cert_trust(directory: Path, *certs: Any, **constraints: Any) -> Any:
    """A trust set of these X.509 certificates, read as `signery trust add CERT.pem` reads them."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from signery.trust import Constraints, TrustSet, load_trusted_key_file

    entries = []
    directory.mkdir(parents=True, exist_ok=True)
    for i, cert in enumerate(certs):
        path = directory / f"anchor{i}.cert.pem"
        path.write_bytes(cert.public_bytes(Encoding.PEM))
        entries.append(load_trusted_key_file(path, name=f"root{i}", constraints=Constraints(**constraints)).key)
    return TrustSet(entries)


def ocm_sign(path: Path, key: Any, **options: Any) -> dict[str, Any]:
    """Sign ``path`` through signery.formats.ocm.FORMAT; return the signature entry written."""
    from signery.formats.ocm import FORMAT
    from signery.keys import FileSigner
    from signery.ocm import open_component_version

    signer = key if hasattr(key, "key_id") else FileSigner(key)
    written = FORMAT.sign(path, signer, options=FORMAT.options(**options))
    cv, _ = open_component_version(written, component=options.get("component"))
    entry = cv.descriptor.signature(options.get("signature_name", "signery"))
    assert entry is not None
    return entry


def ocm_verify(path: Path, trust: Any, **kw: Any) -> Any:
    """Verify ``path`` through the format (``kw`` go to signery.formats.ocm.verify: names, component, now...)."""
    from signery.formats import ocm

    if not kw:
        return ocm.FORMAT.verify(path, trust=trust)
    return ocm.verify(path, trust=trust, **kw)
