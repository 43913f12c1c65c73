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

The entries are encoded and decoded in :mod:`signery.ocm._signature_codec`, the digests walked in
:mod:`signery.ocm._digest_walk`; this module re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..errors import Reason, TamperedError, UsageError, VerificationError
from ..keys import HashName, PublicKey, Signer, key_id, verify_signature
from ..result import SignatureCheck, VerificationResult
from ._digest_walk import MAX_REFERENCE_DEPTH as MAX_REFERENCE_DEPTH
from ._digest_walk import DigestCache as DigestCache
from ._digest_walk import _Closure, _closure_digest, _same_digest
from ._signature_codec import ED25519 as ED25519
from ._signature_codec import MAX_SIGNATURE_CHARS as MAX_SIGNATURE_CHARS
from ._signature_codec import MEDIA_ED25519 as MEDIA_ED25519
from ._signature_codec import MEDIA_PEM as MEDIA_PEM
from ._signature_codec import MEDIA_RSA as MEDIA_RSA
from ._signature_codec import MEDIA_RSA_PSS as MEDIA_RSA_PSS
from ._signature_codec import RSA_PKCS1 as RSA_PKCS1
from ._signature_codec import RSA_PSS as RSA_PSS
from ._signature_codec import SIGNING_ALGORITHMS as SIGNING_ALGORITHMS
from ._signature_codec import ParsedSignature as ParsedSignature
from ._signature_codec import _padding, encode_signature
from ._signature_codec import parse_signature as parse_signature
from .archive import ComponentVersion, Repositories, Repository
from .descriptor import Descriptor
from .digests import NO_DIGEST as NO_DIGEST
from .digests import OCM_HASH_NAMES, descriptor_digest, digest_spec
from .normalise import DEFAULT, V1, check_algorithm
from .x509chain import IssuerConvention, check_issuer, validate_chain

FORMAT = "ocm"

IssuerMode = Literal["subject", "issuer"]


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
        raise UsageError("a signature needs a name (at most 256 characters)", subject="--signature-name")
    if algorithm not in SIGNING_ALGORITHMS:
        raise UsageError(
            f"unknown signature algorithm {algorithm!r}; choose {', '.join(SIGNING_ALGORITHMS)}", subject="--algorithm"
        )
    check_algorithm(normalisation, field="--normalisation")
    if hash_alg not in OCM_HASH_NAMES:
        raise UsageError(f"unsupported hash {hash_alg!r}; choose sha256 or sha512", subject="--hash-algorithm")
    public = signer.public_key()
    if algorithm == ED25519 and not isinstance(public, ed25519.Ed25519PublicKey):
        raise UsageError("algorithm ed25519 needs an Ed25519 key", subject="--algorithm")
    if algorithm != ED25519 and not isinstance(public, rsa.RSAPublicKey):
        raise UsageError(f"algorithm {algorithm} needs an RSA key", subject="--key")
    if certificates and certificates[0].public_key() != public:
        raise UsageError("the first certificate of the chain does not certify the signing key", subject="--chain")
    repo = repository or Repositories()
    _closure_digest(cv, repo, normalisation=normalisation, hash_alg=hash_alg, update=True, closure=_Closure())
    desc = cv.descriptor
    digest = descriptor_digest(desc, normalisation=normalisation, hash_alg=hash_alg)
    raw = bytes.fromhex(digest)
    if algorithm == ED25519:
        sig = signer.sign(raw)
    else:
        sig = signer.sign_digest(raw, hash_name=hash_alg, rsa_padding=_padding(algorithm, "--algorithm"))
    entry_sig = encode_signature(algorithm, sig, certificates)
    if certificates and issuer is None:
        leaf = certificates[0]
        issuer = (leaf.subject if issuer_mode == "subject" else leaf.issuer).rfc4514_string()
    if issuer:
        entry_sig["issuer"] = issuer
    entry = {"name": name, "digest": digest_spec(hash_alg, normalisation, digest), "signature": entry_sig}
    desc.set_signature(entry)
    cv.save()
    return entry


def check_digest(parsed: ParsedSignature, digests: DigestCache) -> list[str]:
    """Recompute what ``parsed`` signed; return the resources that could not be re-digested.

    Raises:
        TamperedError: a blob, a referenced component version or the descriptor differs from what was signed.
    """
    actual, unchecked = digests.digest(parsed.normalisation, parsed.hash_alg)
    if parsed.normalisation == V1 and actual != parsed.digest:  # OCM before the extraIdentity:null enforcement
        actual, unchecked = digests.digest(parsed.normalisation, parsed.hash_alg, v1_null_extra_identity=False)
    if not _same_digest(parsed.digest, actual):
        raise TamperedError(
            f"component descriptor {digests.cv.descriptor.identity} does not match the digest signature "
            f"{parsed.name!r} signed",
            subject="component descriptor",
        )
    return unchecked


def key_fits(parsed: ParsedSignature, key: Any) -> bool:
    """Whether ``key`` is of the type ``parsed``'s algorithm needs (Ed25519 or RSA)."""
    if parsed.algorithm == ED25519:
        return isinstance(key, ed25519.Ed25519PublicKey)
    return isinstance(key, rsa.RSAPublicKey)


def check_value(parsed: ParsedSignature, key: Any) -> None:
    """Check the signature value over the recorded digest with ``key``.

    Raises:
        VerificationError: ``bad-signature`` (a wrong key, a key of the wrong type, an altered value).
    """
    kid = key_id(key) if isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey) else None
    if not key_fits(parsed, key):
        need = "an Ed25519" if parsed.algorithm == ED25519 else "an RSA"
        raise VerificationError(
            f"an {parsed.algorithm} signature needs {need} key", reason=Reason.BAD_SIGNATURE, subject=kid
        )
    digest_bytes = bytes.fromhex(parsed.digest)
    if parsed.algorithm == ED25519:
        verify_signature(key, parsed.value, digest_bytes)
    else:
        verify_signature(
            key,
            parsed.value,
            digest_bytes,
            hash_name=parsed.hash_alg,
            rsa_padding=_padding(parsed.algorithm, parsed.where),
            prehashed=True,
        )


def chain_leaf(
    parsed: ParsedSignature,
    roots: Sequence[x509.Certificate],
    *,
    certificates: Sequence[x509.Certificate] = (),
    issuer: str | None = None,
    issuer_convention: IssuerConvention = "auto",
    now: datetime | None = None,
) -> x509.Certificate:
    """The signing certificate of ``parsed``, its chain (embedded, else ``certificates``) validated up to one of
    ``roots`` and the recorded ``issuer`` (and ``issuer``, when given) checked against it.

    Raises:
        VerificationError: ``unknown-key`` (no chain, or it reaches no root), ``expired-key``, ``policy-violation``.
    """
    chain = list(parsed.certificates) or list(certificates)
    if parsed.certificates and certificates:
        chain += [c for c in certificates if c not in parsed.certificates]
    if not chain:
        raise VerificationError(
            f"signature {parsed.name!r} carries no certificate; give the chain with --cert",
            reason=Reason.UNKNOWN_KEY,
            subject=parsed.name,
        )
    leaf = validate_chain(chain, roots, now=now)
    for pattern in (parsed.issuer, issuer):
        if pattern:
            check_issuer(pattern, leaf, convention=issuer_convention)
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise VerificationError("signing certificate holds an unsupported key type", reason=Reason.POLICY_VIOLATION)
    return leaf


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
    """Verify signature ``signature`` of ``cv`` with one public key, or with X.509 ``roots`` (plus ``certificates``
    when the signature does not embed its chain). Digests of resources and references are recomputed.

    The building block under :mod:`signery.formats.ocm`, which judges every signature against a trust set. A
    ``signature`` that ``cv`` does not carry is a usage error listing the names it does carry.
    """
    desc = cv.descriptor
    subject = desc.identity
    entries = desc.signatures
    index, entry = next(((i, s) for i, s in enumerate(entries) if s.get("name") == signature), (0, None))
    if entry is None:
        raise no_such_signature(desc, signature)
    if public_key is None and not roots:
        raise UsageError("give a public key or a root certificate to verify with", subject="--public-key")
    parsed = parse_signature(entry, index=index)
    claims: dict[str, Any] = {"name": desc.name, "version": desc.version, **parsed.claims()}
    kid: str | None = None
    try:
        claims["unchecked_resources"] = check_digest(parsed, DigestCache(cv, repository))
        key = public_key
        if key is None:
            leaf = chain_leaf(
                parsed, roots, certificates=certificates, issuer=issuer, issuer_convention=issuer_convention, now=now
            )
            key = leaf.public_key()  # type: ignore[assignment]
            claims["certificate"] = leaf.subject.rfc4514_string()
        assert key is not None
        kid = key_id(key)
        check_value(parsed, key)
    except VerificationError as err:
        check = SignatureCheck(FORMAT, kid, reason=err.reason, detail=err.message, subject=err.subject, claims=claims)
        return VerificationResult(subject, (check,))
    return VerificationResult(subject, (SignatureCheck(FORMAT, kid, key_name=signature, claims=claims),))


def no_such_signature(desc: Descriptor, name: str) -> UsageError:
    """The error for a signature name the descriptor does not carry: the names it does carry, not ``unsigned``."""
    names = [str(s.get("name")) for s in desc.signatures if isinstance(s, dict)]
    present = ", ".join(repr(n) for n in names) if names else "none"
    return UsageError(
        f"{desc.identity} has no signature named {name!r} (its signatures: {present})",
        subject=name,
        hint="signery verify checks every signature; signery inspect lists them",
    )


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
    "DigestCache",
    "ParsedSignature",
    "chain_leaf",
    "check_digest",
    "check_value",
    "digest_component_version",
    "key_fits",
    "no_such_signature",
    "parse_signature",
    "sign_component_version",
    "verify_component_version",
]
