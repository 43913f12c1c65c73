"""A signed, expiring, versioned index of the registry, for signery's own client (TUF's freshness idea).

The registry is never trusted with *what* a package is: the client verifies every package against its own trust
store. What the registry could still do is lie about *which* bytes are current: serve yesterday's index (hiding a
fixed release), or keep serving an old one forever (a freeze). So the operator signs the index with a key of their
own (any :class:`signery.keys.Signer`: a key file, a signing service key, a PKCS#11 key; configured by a reference
resolved with :func:`signery.load_signer`), and the client remembers, per registry, which keys it trusts for that
registry and the highest index version it has seen.

Document (``GET /api/index``; also ``signed-index.json`` in a mirror bundle)::

    {"signed": {"_type": "signery-index/1", "version": 7, "issued": "2025-01-02T03:04:05Z",
                "expires": "2025-01-09T03:04:05Z",
                "packages": [{"name", "version", "filename", "sha256", "size",
                              "signatures": [{"filename", "sha256", "size"}]}]},
     "signatures": [{"keyid": "<signery key id>", "sig": "<base64>"}]}

The signature covers the canonical JSON of ``signed`` (sorted keys, no whitespace, UTF-8). :func:`verify_index`
refuses, each with its reason: a document signed by no key trusted for the registry (``unknown-key``), a bad
signature (``bad-signature``), an expired index (``expired-key``: the index's validity ran out), and an index
older than the last one seen (``policy-violation``: a rollback). :func:`check_against` refuses a package whose
bytes differ from what the signed index lists (``tampered``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .._internal.files import atomic_write_bytes, read_bounded
from .._internal.parse import load_json
from ..errors import (
    MalformedError,
    NotFoundError,
    PolicyViolationError,
    Reason,
    SigneryError,
    TamperedError,
    UsageError,
    VerificationError,
)
from ..keys import PublicKey, Signer, key_id, load_public_key, public_key_pem, verify_signature
from .index import VersionIndex, matching

INDEX_TYPE = "signery-index/1"
MAX_SIGNED_INDEX = 64 << 20  # ~300 bytes per version: room for 200,000 versions
MAX_INDEX_SIGNATURES = 8
STATE_DIR = "signed-index"  # data_dir/signed-index/: the last document signed and its version
CLIENT_DIR = "registries"  # $SIGNERY_HOME/registries/<hash>.json: per-registry keys and the last version seen


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedError(f"signed index: {what} is not a time", subject=what)
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedError(f"signed index: {what} {value!r} is not an ISO 8601 time", subject=what) from None
    if t.tzinfo is None:
        raise MalformedError(f"signed index: {what} has no time zone", subject=what)
    return t


def _entry(index: VersionIndex) -> dict[str, Any]:
    return {
        "name": index.name,
        "version": index.version,
        "filename": index.filename,
        "sha256": index.sha256,
        "size": index.size,
        "signatures": [{"filename": s.filename, "sha256": s.sha256, "size": s.size} for s in index.signatures],
    }


# -- the server's side -------------------------------------------------------------------------------------------


def sign_index(
    signer: Signer, packages: Sequence[VersionIndex], *, version: int, now: datetime, expiry: timedelta
) -> bytes:
    """The signed index document (bytes, as served)."""
    signed = {
        "_type": INDEX_TYPE,
        "version": version,
        "issued": _iso(now),
        "expires": _iso(now + expiry),
        "packages": sorted((_entry(p) for p in packages), key=lambda e: (e["name"].lower(), e["version"])),
    }
    sig = signer.sign(canonical(signed))
    doc = {"signed": signed, "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(sig).decode()}]}
    return json.dumps(doc, indent=None, separators=(",", ":")).encode()


class IndexPublisher:
    """Keeps the registry's signed index current: re-signed (version + 1) when the catalogue's content changed or
    half the validity has passed. The version and the document persist in ``data_dir/signed-index/``, so the
    version only ever grows, across restarts too."""

    def __init__(self, signer: Signer, state_dir: Path, *, expiry: timedelta) -> None:
        self.signer = signer
        self.expiry = expiry
        self.state_dir = Path(state_dir)
        self._lock = threading.Lock()
        self._doc: bytes | None = None
        self._digest = ""
        self._version = 0
        self._issued: datetime | None = None
        self._load()

    def _load(self) -> None:
        path = self.state_dir / "state.json"
        try:
            state = load_json(read_bounded(path, 4096, what="signed index state"), source=str(path))
        except (OSError, SigneryError):
            return
        if isinstance(state, dict) and isinstance(state.get("version"), int):
            self._version = state["version"]
            self._digest = str(state.get("digest", ""))
            with_time = state.get("issued")
            self._issued = _parse_time(with_time, "issued") if isinstance(with_time, str) else None
            try:
                self._doc = read_bounded(self.state_dir / "index.json", MAX_SIGNED_INDEX, what="signed index")
            except (OSError, SigneryError):
                self._doc = None

    def current(self, packages: Sequence[VersionIndex], *, now: datetime | None = None) -> bytes:
        now = now or datetime.now(UTC)
        digest = hashlib.sha256(canonical(sorted((_entry(p) for p in packages), key=canonical))).hexdigest()
        with self._lock:
            fresh = self._issued is not None and now - self._issued < self.expiry / 2
            if self._doc is not None and digest == self._digest and fresh:
                return self._doc
            version = self._version + 1
            doc = sign_index(self.signer, packages, version=version, now=now, expiry=self.expiry)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.state_dir / "index.json", doc)
            state = {"version": version, "digest": digest, "issued": _iso(now)}
            atomic_write_bytes(self.state_dir / "state.json", json.dumps(state).encode())
            self._doc, self._digest, self._version, self._issued = doc, digest, version, now
            return doc


# -- the client's side -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIndex:
    """A verified signed index."""

    version: int
    issued: datetime
    expires: datetime
    packages: tuple[VersionIndex, ...]
    key_id: str
    raw: bytes

    def find(self, name: str, version: str | None) -> VersionIndex:
        """The entry for name@version (the latest the index lists when ``version`` is None)."""
        mine = matching(self.packages, name, version)
        if not mine:
            raise TamperedError(
                f"the registry's signed index (version {self.version}) does not list {name}@{version or 'latest'}",
                subject=f"{name}@{version or 'latest'}",
            )
        return mine[0]


def verify_index(
    raw: bytes,
    *,
    trusted: Sequence[PublicKey],
    now: datetime | None = None,
    last_version: int = 0,
    source: str = "signed index",
) -> SignedIndex:
    """Check a signed index document; see the module documentation for each refusal and its reason."""
    now = now or datetime.now(UTC)
    doc = load_json(raw, source=source, max_bytes=MAX_SIGNED_INDEX)
    shaped = isinstance(doc, dict) and isinstance(doc.get("signed"), dict) and isinstance(doc.get("signatures"), list)
    if not shaped:
        raise MalformedError(f"{source} is not a signed index", subject=source)
    signed: dict[str, Any] = doc["signed"]
    if signed.get("_type") != INDEX_TYPE:
        raise MalformedError(f"{source} is not a {INDEX_TYPE} document", subject=source)
    sigs = doc["signatures"][:MAX_INDEX_SIGNATURES]
    by_id = {key_id(k): k for k in trusted}
    message = canonical(signed)
    good: str | None = None
    bad: str | None = None
    for entry in sigs:
        if not isinstance(entry, dict) or entry.get("keyid") not in by_id or not isinstance(entry.get("sig"), str):
            continue
        try:
            verify_signature(by_id[entry["keyid"]], base64.b64decode(entry["sig"], validate=True), message)
        except (VerificationError, binascii.Error, ValueError):
            bad = entry["keyid"]
            continue
        good = entry["keyid"]
        break
    if good is None:
        if bad is not None:
            raise VerificationError(
                f"{source}: the signature by {bad[:16]} does not match the index",
                reason=Reason.BAD_SIGNATURE,
                subject=bad,
            )
        named = ", ".join(str(e.get("keyid", "?"))[:16] for e in sigs if isinstance(e, dict)) or "no key"
        raise VerificationError(
            f"{source} is signed by {named}, which this client does not trust for this registry",
            reason=Reason.UNKNOWN_KEY,
            subject=named,
            hint="signery registry trust-index URL PUBLIC_KEY records the registry's index key",
        )
    version = signed.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise MalformedError(f"{source}: invalid version {version!r}", subject="version")
    issued = _parse_time(signed.get("issued"), "issued")
    expires = _parse_time(signed.get("expires"), "expires")
    if now >= expires:
        raise VerificationError(
            f"{source} (version {version}) expired at {_iso(expires)}; the registry has not re-signed it, or it is "
            "replaying an old one",
            reason=Reason.EXPIRED_KEY,
            subject=f"index version {version}",
        )
    if version < last_version:
        raise PolicyViolationError(
            f"{source} is version {version}, older than version {last_version} already seen from this registry: "
            "a rollback",
            subject=f"index version {version}",
        )
    raw_packages = signed.get("packages")
    if not isinstance(raw_packages, list):
        raise MalformedError(f"{source}: 'packages' is not a list", subject="packages")
    packages = tuple(
        VersionIndex.from_dict({**p, "signatures": p.get("signatures", [])} if isinstance(p, dict) else p)
        for p in raw_packages
    )
    return SignedIndex(version, issued, expires, packages, good, raw)


def check_against(signed: SignedIndex, served: VersionIndex) -> None:
    """Refuse (``tampered``) a version whose bytes or signatures differ from what the signed index lists."""
    listed = signed.find(served.name, served.version)
    if listed.sha256 != served.sha256 or listed.size != served.size:
        raise TamperedError(
            f"{served.ref}: the registry serves sha256 {served.sha256} ({served.size} bytes), its signed index "
            f"(version {signed.version}) lists sha256 {listed.sha256} ({listed.size} bytes)",
            subject=served.ref,
        )
    want = {(s.filename, s.sha256, s.size) for s in listed.signatures}
    got = {(s.filename, s.sha256, s.size) for s in served.signatures}
    if not got <= want:
        raise TamperedError(
            f"{served.ref}: the registry serves signatures its signed index (version {signed.version}) does not list",
            subject=served.ref,
        )


class RegistryTrust:
    """What the client remembers of one registry: the index keys it trusts and the highest version it saw.

    Kept in ``HOME/registries/<sha256 of the URL>.json``.
    """

    def __init__(self, home: Path, url: str) -> None:
        self.url = url.rstrip("/")
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:32]
        self.path = Path(home) / CLIENT_DIR / f"{digest}.json"
        self.keys: list[PublicKey] = []
        self.last_version = 0
        self._load()

    def _load(self) -> None:
        try:
            doc = load_json(read_bounded(self.path, 1 << 20, what="registry state"), source=str(self.path))
        except FileNotFoundError:
            return
        if not isinstance(doc, dict) or doc.get("url") != self.url:
            raise MalformedError(f"{self.path} is not this registry's state", subject=str(self.path))
        for pem in doc.get("keys", []):
            self.keys.append(load_public_key(str(pem).encode(), source=str(self.path)))
        version = doc.get("last_version", 0)
        self.last_version = version if isinstance(version, int) and not isinstance(version, bool) else 0

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "url": self.url,
            "keys": [public_key_pem(k).decode() for k in self.keys],
            "last_version": self.last_version,
        }
        atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode())

    def trust(self, key: PublicKey) -> None:
        if key_id(key) not in {key_id(k) for k in self.keys}:
            self.keys.append(key)

    def check(self, raw: bytes, *, now: datetime | None = None, source: str | None = None) -> SignedIndex:
        """Verify ``raw`` for this registry and remember its version (only ever upwards)."""
        if not self.keys:
            raise UsageError(f"no index key is trusted for {self.url}", subject=self.url)
        signed = verify_index(
            raw, trusted=self.keys, now=now, last_version=self.last_version, source=source or f"{self.url} index"
        )
        if signed.version > self.last_version:
            self.last_version = signed.version
            self.save()
        return signed


def fetch_signed_index(client: Any) -> bytes:
    """``GET /api/index`` from a :class:`~signery.registry.client.RegistryClient` (404: the registry signs none)."""
    try:
        return bytes(client.signed_index())
    except NotFoundError:
        raise VerificationError(
            f"{client.base_url} serves no signed index, but this client trusts an index key for it",
            reason=Reason.UNSIGNED,
            subject=client.base_url,
        ) from None


__all__ = [
    "INDEX_TYPE",
    "IndexPublisher",
    "RegistryTrust",
    "SignedIndex",
    "canonical",
    "check_against",
    "fetch_signed_index",
    "sign_index",
    "verify_index",
]
