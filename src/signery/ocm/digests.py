"""Digest names and computations used by OCM: hash algorithm names, ``genericBlobDigest/v1``, descriptor digests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ..errors import MalformedError
from ..keys import HashName
from .descriptor import Descriptor
from .normalise import normalise

GENERIC_BLOB_DIGEST = "genericBlobDigest/v1"
OCI_ARTIFACT_DIGEST = ("ociArtifactDigest/v1", "ociArtefactDigest/v1")
EXCLUDE_FROM_SIGNATURE = "EXCLUDE-FROM-SIGNATURE"
NO_DIGEST = "NO-DIGEST"

# OCM writes SHA-256 / SHA-512; descriptors from old OCM releases carry sha256 / sha512.
_HASHES: dict[str, HashName] = {"SHA-256": "sha256", "SHA-512": "sha512", "sha256": "sha256", "sha512": "sha512"}
OCM_HASH_NAMES: dict[HashName, str] = {"sha256": "SHA-256", "sha512": "SHA-512"}


def hash_name(name: Any, *, field: str = "hashAlgorithm") -> HashName:
    """The hashlib name for an OCM hash algorithm name; ``malformed`` naming ``field`` if unknown."""
    try:
        return _HASHES[name]
    except (KeyError, TypeError):
        raise MalformedError(
            f"unknown hash algorithm {name!r} in {field}; known: SHA-256, SHA-512", subject=field
        ) from None


def ocm_hash_name(name: str) -> str:
    """``sha256`` or ``SHA-256`` (any accepted spelling) to the name OCM writes, ``SHA-256``."""
    return OCM_HASH_NAMES[hash_name(name, field="hash")]


def blob_digest(chunks: Iterable[bytes], hash_alg: HashName) -> str:
    """``genericBlobDigest/v1``: the hex hash of the blob bytes."""
    h = hashlib.new(hash_alg)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def descriptor_digest(
    descriptor: Descriptor, *, normalisation: str, hash_alg: HashName, v1_null_extra_identity: bool = True
) -> str:
    """The hex digest of the normalised descriptor: what an OCM signature signs."""
    data = normalise(descriptor, normalisation, v1_null_extra_identity=v1_null_extra_identity)
    return hashlib.new(hash_alg, data).hexdigest()


def digest_spec(hash_alg: HashName, normalisation: str, value: str) -> dict[str, str]:
    return {"hashAlgorithm": OCM_HASH_NAMES[hash_alg], "normalisationAlgorithm": normalisation, "value": value}


def is_excluded(digest: Any) -> bool:
    return isinstance(digest, dict) and digest.get("normalisationAlgorithm") == EXCLUDE_FROM_SIGNATURE
