"""The digest walk under OCM signing: every resource blob and every referenced component version (recursively,
resolved from a repository) re-digested and checked against what the descriptor records, or, when signing,
recorded where missing. :mod:`signery.ocm.signing` signs and verifies over it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from ..errors import MalformedError, SigneryError, TamperedError, UsageError
from ..keys import HashName
from ._layout import ComponentVersion, Repository, local_reference
from .archive import Repositories
from .descriptor import Descriptor, element_label
from .digests import GENERIC_BLOB_DIGEST, blob_digest, descriptor_digest, digest_spec, hash_name, is_excluded
from .normalise import check_algorithm

MAX_REFERENCE_DEPTH = 32  # reference graphs deeper than this are cycles or attacks, not products


@dataclass
class _Closure:
    """What a digest walk found: resources it could not check itself (not local blobs)."""

    unchecked: list[str] = field(default_factory=list)


def _resource_digests(cv: ComponentVersion, hash_alg: HashName, *, update: bool, closure: _Closure, where: str) -> None:
    desc = cv.descriptor
    for item in desc.resources:
        label = f"{where}{element_label('resources', item)}"
        access = item.get("access")
        if isinstance(access, dict) and access.get("type") in ("none", "None"):
            if item.get("digest") is not None:
                if update:
                    item.pop("digest")
                else:
                    raise MalformedError(f"{label}: has access none but carries a digest", subject=label)
            continue
        digest = item.get("digest")
        if is_excluded(digest):
            continue
        ref = local_reference(access)
        if digest is not None and digest.get("normalisationAlgorithm") != GENERIC_BLOB_DIGEST:
            closure.unchecked.append(label)  # an OCI artifact digest: checking it needs the registry
            continue
        if ref is None:
            if digest is None:
                kind = access.get("type") if isinstance(access, dict) else None
                raise UsageError(
                    f"{label}: no digest, and its access type {kind!r} is not a local blob signery can read; "
                    "add the digest first",
                    subject=label,
                )
            closure.unchecked.append(label)
            continue
        algo = hash_name(digest.get("hashAlgorithm"), field=f"{label}.digest.hashAlgorithm") if digest else hash_alg
        actual = blob_digest(cv.open_blob(ref), algo)
        if digest is None:
            if not update:
                raise TamperedError(f"{label} has no digest", subject=label)
            item["digest"] = digest_spec(algo, GENERIC_BLOB_DIGEST, actual)
        elif not _same_digest(digest.get("value", ""), actual):
            raise TamperedError(f"{label}: blob content does not match its recorded digest", subject=label)


def _same_digest(recorded: object, actual: str) -> bool:
    """Constant-time comparison of a recorded hex digest (any JSON value, from a hostile descriptor) with ours."""
    text = str(recorded).lower().encode("utf-8", "surrogatepass")  # hmac compares non-ASCII str only as bytes
    return hmac.compare_digest(text, actual.encode("ascii"))


def _closure_digest(
    cv: ComponentVersion,
    repo: Repository,
    *,
    normalisation: str,
    hash_alg: HashName,
    update: bool,
    closure: _Closure,
    stack: tuple[str, ...] = (),
) -> Descriptor:
    """Check (and with ``update`` fill in) resource and reference digests of ``cv``; return its descriptor."""
    # The root is edited in place when signing and only read when verifying; below the root missing digests are
    # filled in, so those get a working copy.
    desc = cv.descriptor if not stack else cv.descriptor.copy()
    if desc.identity in stack:
        raise MalformedError(f"reference cycle: {' -> '.join((*stack, desc.identity))}", subject=desc.identity)
    if len(stack) >= MAX_REFERENCE_DEPTH:
        raise MalformedError(f"references nested deeper than {MAX_REFERENCE_DEPTH}", subject=desc.identity)
    view = _View(cv, desc)
    where = "" if not stack else f"{desc.identity}: "
    # Below the root, digests missing from a referenced descriptor are computed in memory (OCM does the same);
    # only the root's own recorded digests must be present when verifying.
    fill = update or bool(stack)
    _resource_digests(view, hash_alg, update=fill, closure=closure, where=where)
    for item in desc.references:
        label = f"{where}{element_label('references', item)}"
        name, version = str(item["componentName"]), str(item.get("version", ""))
        target = repo.lookup(name, version)
        if target is None:
            raise UsageError(
                f"{label}: component version {name}:{version} not found; give a transport archive holding it",
                subject=label,
                hint="--repository CTF_DIR",
            )
        stored = item.get("digest")
        if is_excluded(stored):
            continue
        if stored is not None and not isinstance(stored, dict):
            raise MalformedError(f"{label}.digest is not a mapping", subject=label)
        r_norm = (
            check_algorithm(str(stored.get("normalisationAlgorithm")), field=f"{label}.digest")
            if stored
            else normalisation
        )
        r_hash = hash_name(stored.get("hashAlgorithm"), field=f"{label}.digest.hashAlgorithm") if stored else hash_alg
        sub = _closure_digest(
            target,
            repo,
            normalisation=r_norm,
            hash_alg=r_hash,
            update=update,
            closure=closure,
            stack=(*stack, desc.identity),
        )
        actual = descriptor_digest(sub, normalisation=r_norm, hash_alg=r_hash)
        if stored is None:
            if not fill:
                raise TamperedError(f"{label} has no digest", subject=label)
            item["digest"] = digest_spec(r_hash, r_norm, actual)
        elif not _same_digest(stored.get("value", ""), actual):
            raise TamperedError(
                f"{label}: referenced component version does not match its recorded digest", subject=label
            )
    return desc


class _View:
    """A component version whose descriptor is a working copy (blobs still come from the original)."""

    def __init__(self, cv: ComponentVersion, desc: Descriptor) -> None:
        self._cv, self.descriptor, self.location = cv, desc, cv.location

    def open_blob(self, reference: str) -> Any:
        return self._cv.open_blob(reference)

    def save(self) -> None:  # pragma: no cover - views are never saved
        raise UsageError("internal: a digest view cannot be saved")


class DigestCache:
    """The descriptor digests of one component version, each (normalisation, hash) computed once: every resource
    blob and every referenced component version is re-digested, which is the expensive part of verifying."""

    def __init__(self, cv: ComponentVersion, repository: Repository | None = None) -> None:
        self.cv, self.repository = cv, repository or Repositories()
        self._done: dict[tuple[str, str, bool], tuple[str, list[str]] | SigneryError] = {}

    def digest(
        self, normalisation: str, hash_alg: HashName, *, v1_null_extra_identity: bool = True
    ) -> tuple[str, list[str]]:
        """(hex digest, resources not re-digested); raises what the walk found (``tampered``, ``malformed``...)."""
        key = (normalisation, hash_alg, v1_null_extra_identity)
        if key not in self._done:
            try:
                closure = _Closure()
                checked = _closure_digest(
                    self.cv,
                    self.repository,
                    normalisation=normalisation,
                    hash_alg=hash_alg,
                    update=False,
                    closure=closure,
                )
                value = descriptor_digest(
                    checked,
                    normalisation=normalisation,
                    hash_alg=hash_alg,
                    v1_null_extra_identity=v1_null_extra_identity,
                )
                self._done[key] = (value, closure.unchecked)
            except SigneryError as err:
                self._done[key] = err
        found = self._done[key]
        if isinstance(found, SigneryError):
            raise found
        return found


__all__ = ["MAX_REFERENCE_DEPTH", "DigestCache"]
