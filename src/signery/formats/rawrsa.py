"""Raw RSA over a digest: ``X.sig`` is PKCS#1 v1.5 *without* a DigestInfo over the 32 bytes of SHA-256(X).

This is what ``openssl pkeyutl -sign -inkey KEY -in digest.bin`` writes (balenaSign's ``/cert/sign``) and what the
balenaOS flasher checks with ``openssl pkeyutl -verify -certin -inkey kmod.crt -sigfile X.sig -in digest.bin``: the
encoded block is ``00 01 FF..FF 00 || SHA-256(X)``, no ASN.1 naming the hash. A DigestInfo signature
(``openssl dgst -sign``) fails that check, and a raw one fails ``openssl dgst -verify``: the two are not
interchangeable, so this is a format of its own.

The file is the bare signature, exactly as long as the key's modulus (256 bytes for RSA-2048). It names no key:
verification tries every trusted RSA key of that size.

Signing goes through a :class:`~signery.keys.Signer` like every format: :func:`sign_digest_raw` asks for
``sign_digest(..., rsa_padding="pkcs1v15-none")`` (PKCS#1 v1.5 over the bare digest; a key file signs it with
cryptography's ``utils.NoDigestInfo``, OpenSSL's own constant-time, blinded RSA; a token with ``CKM_RSA_PKCS``; the
signing service with ``signature_algorithm: pkcs1v15-none``). Every signature is checked against the signer's
public key before it is written.

Example::

    sig = FORMAT.sign(Path("balena.img"), FileSigner(key))           # balena.img.sig
    result = FORMAT.verify(Path("balena.img"), trust=trust)
    raw = sign_digest_raw(hashlib.sha256(data).digest(), signer)     # what /cert/sign answers
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "RawRsaFormat",
    "RawRsaOptions",
    "file_digest",
    "judge_rsa",
    "recover_digest_raw",
    "rsa_candidates",
    "sign",
    "sign_digest_raw",
    "verify",
    "verify_digest_raw",
]

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

from .._fs import atomic_write_bytes
from ..digests import hash_file
from ..errors import EnvironmentFailure, MalformedError, Reason, UsageError
from ..keys import RAW_PKCS1, RsaPadding, Signer, short_id
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustedKey, TrustSet
from ._base import Options, SignatureFileFormat, SignRequest, VerifyRequest, beside
from ._common import pkix_keys, read_head, read_signature_file, reading, standing

NAME = "raw-rsa"
SUFFIX = ".sig"
DIGEST_SIZE = 32  # SHA-256, the only hash the flasher uses
RSA_SIZES = (256, 384, 512)  # RSA-2048, -3072, -4096 signatures: a raw signature is exactly the modulus length
RAW_PADDING: RsaPadding = RAW_PKCS1  # the Signer padding this format needs (see the module docstring)


def _rsa_public(signer: Signer) -> rsa.RSAPublicKey:
    public = signer.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise UsageError(f"the {NAME} format needs an RSA key; {short_id(signer.key_id)} is not one")
    return public


def recover_digest_raw(public: rsa.RSAPublicKey, signature: bytes) -> bytes | None:
    """What a raw PKCS#1 v1.5 signature carries under ``public`` (``None``: not a signature by this key).

    Uses OpenSSL's padding check (cryptography's ``recover_data_from_signature`` with ``NoDigestInfo``).
    """
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    if len(signature) != (public.key_size + 7) // 8:
        return None
    try:
        return public.recover_data_from_signature(signature, padding.PKCS1v15(), utils.NoDigestInfo())
    except (InvalidSignature, ValueError):
        return None


def verify_digest_raw(public: rsa.RSAPublicKey, signature: bytes, digest: bytes) -> bool:
    """Whether ``signature`` is ``public``'s raw PKCS#1 v1.5 signature of exactly ``digest``."""
    recovered = recover_digest_raw(public, signature)
    return recovered is not None and hmac.compare_digest(recovered, digest)


def sign_digest_raw(digest: bytes, signer: Signer) -> bytes:
    """The raw PKCS#1 v1.5 signature (no DigestInfo) of a 32-byte SHA-256 ``digest``; checked before returned.

    Raises:
        UsageError: not an RSA signer, a digest of the wrong length, or a signer that cannot sign without a
            DigestInfo.
        EnvironmentFailure: the signer returned something that is not a valid signature of ``digest``.
    """
    if len(digest) != DIGEST_SIZE:
        raise UsageError(f"a SHA-256 digest is {DIGEST_SIZE} bytes, got {len(digest)}")
    public = _rsa_public(signer)
    try:
        signature = signer.sign_digest(digest, hash_name="sha256", rsa_padding=RAW_PADDING)
    except UsageError:
        raise UsageError(
            f"key {short_id(signer.key_id)} cannot sign a digest without a DigestInfo "
            f"(rsa_padding={RAW_PADDING!r}), which the {NAME} format needs",
            subject=signer.key_id,
        ) from None
    if not verify_digest_raw(public, signature, digest):
        raise EnvironmentFailure(
            f"key {short_id(signer.key_id)} returned a signature that is not a raw PKCS#1 v1.5 signature of the digest",
            subject=signer.key_id,
        )
    return signature


def file_digest(subject: Path, progress: Callable[[int], None] | None = None) -> bytes:
    """SHA-256 of ``subject``, streamed; a missing or unreadable file is a usage error naming it."""
    with reading(subject, directory=f"; {NAME} signs one file"):
        return hash_file(Path(subject), ("sha256",), progress=progress)["sha256"]


def rsa_candidates(trust: TrustSet, *, sizes: Iterable[int] | None = None) -> list[tuple[TrustedKey, rsa.RSAPublicKey]]:
    """The trusted PKIX RSA keys (of the given signature lengths in bytes, when given)."""
    wanted = set(sizes) if sizes is not None else None
    return [
        (entry, public)
        for entry, public in pkix_keys(trust)
        if isinstance(public, rsa.RSAPublicKey) and (wanted is None or (public.key_size + 7) // 8 in wanted)
    ]


def judge_rsa(
    fmt: str,
    where: str,
    signature: bytes,
    digest: bytes,
    trust: TrustSet,
    *,
    recover: Callable[[rsa.RSAPublicKey, bytes], bytes | None],
    now: datetime,
    claims: dict[str, Any] | None = None,
) -> SignatureCheck:
    """The check of one RSA signature that names no key, against every trusted RSA key.

    ``recover`` says what a key's signature carries (or ``None`` when it is not this key's): a trusted key whose
    signature carries another digest means the file changed (``tampered``); no key at all is ``unknown-key``.
    """
    claims = dict(claims or {})
    tampered: SignatureCheck | None = None
    bad: SignatureCheck | None = None
    candidates = rsa_candidates(trust, sizes=(len(signature),))
    for entry, public in candidates:
        recovered = recover(public, signature)
        if recovered is None:
            continue
        if len(recovered) != len(digest):
            bad = bad or SignatureCheck(
                fmt,
                entry.key_id,
                Reason.BAD_SIGNATURE,
                key_name=entry.name,
                detail=f"{where}: the signature by {entry.name} ({entry.short_id}) is not of the expected encoding "
                f"(it carries {len(recovered)} bytes, not a bare {len(digest)}-byte digest"
                + (", e.g. a DigestInfo)" if len(recovered) > len(digest) else ")"),
                subject=entry.key_id,
                claims=claims,
            )
            continue
        if not hmac.compare_digest(recovered, digest):
            tampered = tampered or SignatureCheck(
                fmt,
                entry.key_id,
                Reason.TAMPERED,
                key_name=entry.name,
                detail=f"{where} was signed by {entry.name} ({entry.short_id}) but has changed since",
                subject=where,
                claims=claims,
            )
            continue
        label = f"{entry.name} ({entry.short_id})"
        status, detail = standing(entry, now=now, fmt=fmt, claims=claims, label=label) or (
            None,
            f"good signature by {label}",
        )
        return SignatureCheck(
            fmt,
            entry.key_id,
            status,
            key_name=entry.name,
            detail=detail,
            subject=entry.key_id if status else None,
            claims=claims,
        )
    found = tampered or bad
    if found is not None:
        return found
    tried = ", ".join(f"{e.name} ({e.short_id})" for e, _ in candidates) or "none"
    return SignatureCheck(
        fmt,
        None,
        Reason.UNKNOWN_KEY,
        detail=f"{where} is signed by a key that is not trusted (RSA-{len(signature) * 8} keys tried: {tried})",
        subject=where,
        claims=claims,
    )


def _signature_path(subject: Path, signature: Path | None) -> Path:
    return Path(signature) if signature is not None else beside(subject, SUFFIX)


def _read_signature(path: Path) -> bytes:
    data = read_signature_file(path, max(RSA_SIZES))
    if len(data) not in RSA_SIZES:
        raise MalformedError(
            f"{path} is not a raw RSA signature ({len(data)} bytes; one is 256, 384 or 512 bytes)", subject=str(path)
        )
    return data


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Write ``SUBJECT.sig`` (or ``output``): the raw PKCS#1 v1.5 signature of SHA-256(subject)."""
    _rsa_public(signer)  # refuse an EC or Ed25519 key before reading a large file
    signature = sign_digest_raw(file_digest(subject, request.progress), signer)
    out = request.target(_signature_path(subject, None))
    atomic_write_bytes(out, signature, mode=0o644)
    return out


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Check ``SUBJECT.sig`` (or ``signature``) against the trusted RSA keys; no signature file is ``unsigned``."""
    path = _signature_path(subject, request.signature)
    if request.signature is None and not path.is_file():
        return request.unsigned(subject)
    sig = _read_signature(path)
    digest = file_digest(subject, request.progress)
    claims = {"hash": "sha256", "padding": "pkcs1v15-none", "digest": digest.hex()}
    check = judge_rsa(
        NAME, str(subject), sig, digest, request.trust, recover=recover_digest_raw, now=request.now, claims=claims
    )
    return request.result(subject, check)


def _looks_raw(path: Path) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size not in RSA_SIZES:
        return False
    head = read_head(path, 1) or b""
    # An OpenPGP packet (0x88-0x8B, 0xC2) or text (an RPi digest file starts with hex) is not ours to claim.
    return bool(head) and head[0] not in (0x88, 0x89, 0x8A, 0x8B, 0xC2)


def _inspect(subject: Path, path: Path) -> dict[str, Any]:
    sig = _read_signature(path)
    claims = {"algorithm": f"rsa-{len(sig) * 8}", "hash": "sha256", "padding": RAW_PADDING}
    return FORMAT.inspected(subject, [{"format": NAME, "key_id": None, "claims": claims}], signature=path)


@dataclass(frozen=True)
class RawRsaOptions(Options):
    """The raw RSA format takes no options: SHA-256, PKCS#1 v1.5 without DigestInfo, always."""


class RawRsaFormat(SignatureFileFormat):
    """Raw PKCS#1 v1.5 (no DigestInfo) over SHA-256 of a file, as ``openssl pkeyutl`` and balena's flasher use."""

    name = NAME
    summary = "a raw RSA signature X.sig over SHA-256(X), no DigestInfo (openssl pkeyutl; balenaOS images)"
    options_type = RawRsaOptions

    def signature_file(self, subject: Path, signature: Path | None) -> Path | None:
        """``SUBJECT.sig`` (or ``signature``), when it is a file; detect asks whether it has the length of a raw
        RSA signature and is not OpenPGP."""
        path = _signature_path(subject, signature)
        return path if path.is_file() else None

    def may_carry(self, subject: Path) -> bool:
        return _looks_raw(_signature_path(Path(subject), None))

    def default_output(self, subject: Path, options: Options) -> Path:
        return _signature_path(Path(subject), None)


FORMAT = RawRsaFormat(_sign, _verify, _looks_raw, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
