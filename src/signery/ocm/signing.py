"""Sign and verify OCM component versions with named signatures.

Signing fills in the digest of every resource (``genericBlobDigest/v1`` over local blobs) and of every
referenced component version (recursively, resolved from a transport archive), then digests the normalised
descriptor and signs that digest as a prehashed value, as OCM does. Several named signatures coexist; signing
under an existing name replaces only that one. Verification recomputes all of it.

Signature encodings (``signature.mediaType``):

- ``application/vnd.ocm.signature.rsa`` - RSASSA-PKCS1-V1_5, hex (the legacy OCM default);
- ``application/vnd.ocm.signature.rsa.pss`` - RSASSA-PSS, hex (the OCM v2 default);
- ``application/x-pem-file`` - a PEM ``SIGNATURE`` block (header ``Signature Algorithm``) followed by the
  certificate chain, leaf first: verifying needs only the root;
- ``application/vnd.signery.signature.ed25519`` - Ed25519 over the digest bytes, hex. A signery extension:
  OCM has no Ed25519 handler, so OCM tools cannot verify it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..errors import MalformedError, Reason, TamperedError, UsageError, VerificationError
from ..keys import HashName, PublicKey, RsaPadding, Signer, key_id, verify_signature
from ..result import SignatureCheck, VerificationResult
from .archive import ComponentVersion, Repositories, Repository, local_reference
from .descriptor import Descriptor, element_label
from .digests import (
    GENERIC_BLOB_DIGEST,
    NO_DIGEST,
    OCM_HASH_NAMES,
    blob_digest,
    descriptor_digest,
    digest_spec,
    hash_name,
    is_excluded,
)
from .normalise import DEFAULT, V1, check_algorithm
from .x509chain import IssuerConvention, check_issuer, load_pem_certificates, validate_chain

FORMAT = "ocm"
RSA_PKCS1 = "RSASSA-PKCS1-V1_5"
RSA_PSS = "RSASSA-PSS"
ED25519 = "ed25519"
SIGNING_ALGORITHMS: tuple[str, ...] = (RSA_PKCS1, RSA_PSS, ED25519)
MEDIA_RSA = "application/vnd.ocm.signature.rsa"
MEDIA_RSA_PSS = "application/vnd.ocm.signature.rsa.pss"
MEDIA_PEM = "application/x-pem-file"
MEDIA_ED25519 = "application/vnd.signery.signature.ed25519"
_PLAIN_MEDIA = {RSA_PKCS1: MEDIA_RSA, RSA_PSS: MEDIA_RSA_PSS, ED25519: MEDIA_ED25519}
MAX_REFERENCE_DEPTH = 32  # reference graphs deeper than this are cycles or attacks, not products
MAX_SIGNATURE_CHARS = 256 << 10  # a PEM signature with a long chain is a few KiB
_PEM_SIGNATURE = re.compile(rb"-----BEGIN SIGNATURE-----\r?\n(?P<body>.*?)-----END SIGNATURE-----", re.DOTALL)

IssuerMode = Literal["subject", "issuer"]


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
                hint="--repo CTF_DIR",
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


def _signature_pem(algorithm: str, signature: bytes, chain: Sequence[x509.Certificate]) -> str:
    """PEM as Go's ``pem.EncodeToMemory`` writes it: the header, a blank line, base64 in 64-column lines."""
    b64 = base64.b64encode(signature).decode()
    lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    text = f"-----BEGIN SIGNATURE-----\nSignature Algorithm: {algorithm}\n\n{lines}\n-----END SIGNATURE-----\n"
    return text + "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)


def _parse_signature_pem(value: str, where: str) -> tuple[bytes, str | None, list[x509.Certificate]]:
    data = value.encode()
    m = _PEM_SIGNATURE.search(data)
    if m is None:
        raise MalformedError(f"{where}: PEM value holds no SIGNATURE block", subject=where)
    header, _, body = m.group("body").partition(b"\n\n") if b"\n\n" in m.group("body") else (b"", b"", m.group("body"))
    algorithm = None
    for line in header.decode(errors="replace").splitlines():
        k, _, v = line.partition(":")
        if k.strip() == "Signature Algorithm":
            algorithm = v.strip()
    try:
        sig = base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise MalformedError(f"{where}: SIGNATURE block is not base64", subject=where) from None
    rest = data[m.end() :]
    certs = load_pem_certificates(rest, source=where) if b"-----BEGIN CERTIFICATE-----" in rest else []
    return sig, algorithm, certs


def _padding(algorithm: str, where: str) -> RsaPadding:
    if algorithm == RSA_PKCS1:
        return "pkcs1v15"
    if algorithm == RSA_PSS:
        return "pss"
    raise MalformedError(f"{where}: unsupported signature algorithm {algorithm!r}", subject=where)


def sign_component_version(
    cv: ComponentVersion,
    signer: Signer,
    *,
    name: str,
    repository: Repository | None = None,
    algorithm: str = RSA_PKCS1,
    normalisation: str = DEFAULT,
    hash_alg: HashName = "sha256",
    certificates: Sequence[x509.Certificate] = (),
    issuer: str | None = None,
    issuer_mode: IssuerMode = "subject",
) -> dict[str, Any]:
    """Sign ``cv`` under signature ``name``, write it back atomically, and return the signature entry.

    With ``certificates`` (leaf first; the leaf must certify the signer's key) the signature is written in the
    PEM form that carries the chain. ``issuer`` defaults, when certificates are given, to the leaf's Subject DN
    (``issuer_mode="subject"``, the legacy OCM CLI) or the leaf's Issuer DN (``"issuer"``, the OCM v2 library).
    """
    if not name or len(name) > 256:
        raise UsageError("a signature needs a name (at most 256 characters)", subject="--signature")
    if algorithm not in SIGNING_ALGORITHMS:
        raise UsageError(
            f"unknown signature algorithm {algorithm!r}; choose {', '.join(SIGNING_ALGORITHMS)}", subject="--algorithm"
        )
    check_algorithm(normalisation, field="--normalisation")
    if hash_alg not in OCM_HASH_NAMES:
        raise UsageError(f"unsupported hash {hash_alg!r}; choose sha256 or sha512", subject="--hash")
    public = signer.public_key()
    if algorithm == ED25519 and not isinstance(public, ed25519.Ed25519PublicKey):
        raise UsageError("algorithm ed25519 needs an Ed25519 key", subject="--algorithm")
    if algorithm != ED25519 and not isinstance(public, rsa.RSAPublicKey):
        raise UsageError(f"algorithm {algorithm} needs an RSA key", subject="--key")
    if certificates and certificates[0].public_key() != public:
        raise UsageError("the first certificate does not certify the signing key", subject="--cert")
    repo = repository or Repositories()
    _closure_digest(cv, repo, normalisation=normalisation, hash_alg=hash_alg, update=True, closure=_Closure())
    desc = cv.descriptor
    digest = descriptor_digest(desc, normalisation=normalisation, hash_alg=hash_alg)
    raw = bytes.fromhex(digest)
    if algorithm == ED25519:
        sig = signer.sign(raw)
    else:
        sig = signer.sign_digest(raw, hash_name=hash_alg, rsa_padding=_padding(algorithm, "--algorithm"))
    entry_sig: dict[str, Any] = {"algorithm": algorithm}
    if certificates:
        entry_sig.update(mediaType=MEDIA_PEM, value=_signature_pem(algorithm, sig, certificates))
        if issuer is None:
            leaf = certificates[0]
            issuer = (leaf.subject if issuer_mode == "subject" else leaf.issuer).rfc4514_string()
    else:
        entry_sig.update(mediaType=_PLAIN_MEDIA[algorithm], value=sig.hex())
    if issuer:
        entry_sig["issuer"] = issuer
    entry = {"name": name, "digest": digest_spec(hash_alg, normalisation, digest), "signature": entry_sig}
    desc.set_signature(entry)
    cv.save()
    return entry


def _decode_signature(sig: dict[str, Any], where: str) -> tuple[str, bytes, list[x509.Certificate]]:
    """(algorithm, signature bytes, embedded certificates) by media type, refusing inconsistent pairings."""
    media, algorithm, value = sig.get("mediaType"), sig.get("algorithm"), sig.get("value")
    if not isinstance(value, str) or not value or len(value) > MAX_SIGNATURE_CHARS:
        raise MalformedError(f"{where}.value is missing or too large", subject=f"{where}.value")
    if media == MEDIA_PEM:
        raw, pem_alg, certs = _parse_signature_pem(value, f"{where}.value")
        alg = pem_alg or algorithm
        if pem_alg and algorithm and pem_alg != algorithm:
            raise MalformedError(
                f"{where}: algorithm {algorithm} but the PEM says {pem_alg}", subject=f"{where}.algorithm"
            )
        if alg not in SIGNING_ALGORITHMS:
            raise MalformedError(f"{where}: unsupported signature algorithm {alg!r}", subject=f"{where}.algorithm")
        return str(alg), raw, certs
    by_media = {v: k for k, v in _PLAIN_MEDIA.items()}
    if media not in by_media:
        raise MalformedError(f"{where}: unsupported signature media type {media!r}", subject=f"{where}.mediaType")
    alg = by_media[str(media)]
    if algorithm is not None and algorithm != alg:
        # OCM v2 trusts the media type alone; a mismatch means a confused or tampered entry, so refuse it.
        raise MalformedError(
            f"{where}: algorithm {algorithm!r} contradicts media type {media!r}", subject=f"{where}.algorithm"
        )
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedError(f"{where}.value is not hex", subject=f"{where}.value") from None
    return alg, raw, []


def verify_component_version(
    cv: ComponentVersion,
    *,
    signature: str,
    repository: Repository | None = None,
    public_key: PublicKey | None = None,
    roots: Sequence[x509.Certificate] = (),
    certificates: Sequence[x509.Certificate] = (),
    issuer: str | None = None,
    issuer_convention: IssuerConvention = "auto",
    now: datetime | None = None,
) -> VerificationResult:
    """Verify signature ``signature`` of ``cv`` with a public key, or with X.509 ``roots`` (plus ``certificates``
    when the signature does not embed its chain). Digests of resources and references are recomputed."""
    desc = cv.descriptor
    subject = desc.identity
    entry = desc.signature(signature)
    if entry is None:
        return VerificationResult(subject, ())
    if public_key is None and not roots:
        raise UsageError("give a public key or a root certificate to verify with", subject="--public-key")
    where = f"signatures[{signature}]"
    dig = entry.get("digest")
    sig = entry.get("signature")
    if not isinstance(dig, dict) or not isinstance(sig, dict):
        raise MalformedError(f"{where}: digest and signature are required", subject=where)
    norm = check_algorithm(str(dig.get("normalisationAlgorithm")), field=f"{where}.digest.normalisationAlgorithm")
    h = hash_name(dig.get("hashAlgorithm"), field=f"{where}.digest.hashAlgorithm")
    recorded = str(dig.get("value", "")).lower()
    if not re.fullmatch(r"[0-9a-f]+", recorded) or len(recorded) != (64 if h == "sha256" else 128):
        raise MalformedError(f"{where}.digest.value is not a {h} hex digest", subject=f"{where}.digest.value")
    algorithm, raw, embedded = _decode_signature(sig, f"{where}.signature")
    claims: dict[str, Any] = {
        "name": desc.name,
        "version": desc.version,
        "signature": signature,
        "algorithm": algorithm,
        "normalisation": norm,
        "hash": OCM_HASH_NAMES[h],
        "digest": recorded,
        "issuer": sig.get("issuer"),
    }
    kid: str | None = None
    try:
        closure = _Closure()
        checked = _closure_digest(
            cv, repository or Repositories(), normalisation=norm, hash_alg=h, update=False, closure=closure
        )
        claims["unchecked_resources"] = closure.unchecked
        actual = descriptor_digest(checked, normalisation=norm, hash_alg=h)
        if norm == V1 and actual != recorded:  # OCM before the extraIdentity:null enforcement
            actual = descriptor_digest(checked, normalisation=norm, hash_alg=h, v1_null_extra_identity=False)
        if not _same_digest(recorded, actual):
            raise TamperedError(
                f"component descriptor {subject} does not match the digest signature {signature!r} signed",
                subject="component descriptor",
            )
        key = public_key
        if key is None:
            chain = list(embedded) or list(certificates)
            if embedded and certificates:
                chain += [c for c in certificates if c not in embedded]
            if not chain:
                raise VerificationError(
                    f"signature {signature!r} carries no certificate; give the chain with --cert",
                    reason=Reason.UNKNOWN_KEY,
                    subject=signature,
                )
            leaf = validate_chain(chain, roots, now=now)
            for pattern in (sig.get("issuer"), issuer):
                if isinstance(pattern, str) and pattern:
                    check_issuer(pattern, leaf, convention=issuer_convention)
            leaf_key = leaf.public_key()
            if not isinstance(leaf_key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
                raise VerificationError(
                    "signing certificate holds an unsupported key type", reason=Reason.POLICY_VIOLATION
                )
            key = leaf_key
            claims["certificate"] = leaf.subject.rfc4514_string()
        kid = key_id(key)
        digest_bytes = bytes.fromhex(recorded)
        if algorithm == ED25519:
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise VerificationError(
                    "an ed25519 signature needs an Ed25519 key", reason=Reason.BAD_SIGNATURE, subject=kid
                )
            verify_signature(key, raw, digest_bytes)
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise VerificationError(
                    f"an {algorithm} signature needs an RSA key", reason=Reason.BAD_SIGNATURE, subject=kid
                )
            verify_signature(
                key, raw, digest_bytes, hash_name=h, rsa_padding=_padding(algorithm, where), prehashed=True
            )
    except VerificationError as err:
        check = SignatureCheck(FORMAT, kid, reason=err.reason, detail=err.message, subject=err.subject, claims=claims)
        return VerificationResult(subject, (check,))
    return VerificationResult(subject, (SignatureCheck(FORMAT, kid, key_name=signature, claims=claims),))


def digest_component_version(
    cv: ComponentVersion,
    *,
    repository: Repository | None = None,
    normalisation: str = DEFAULT,
    hash_alg: HashName = "sha256",
) -> str:
    """The descriptor digest after checking every recorded resource and reference digest (nothing is written)."""
    checked = _closure_digest(
        cv,
        repository or Repositories(),
        normalisation=normalisation,
        hash_alg=hash_alg,
        update=False,
        closure=_Closure(),
    )
    return descriptor_digest(checked, normalisation=normalisation, hash_alg=hash_alg)


__all__ = [
    "ED25519",
    "MEDIA_ED25519",
    "MEDIA_PEM",
    "MEDIA_RSA",
    "MEDIA_RSA_PSS",
    "NO_DIGEST",
    "RSA_PKCS1",
    "RSA_PSS",
    "SIGNING_ALGORITHMS",
    "digest_component_version",
    "sign_component_version",
    "verify_component_version",
]
