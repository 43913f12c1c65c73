"""OCM signature entries, encoded and decoded by ``signature.mediaType``:

- ``application/vnd.ocm.signature.rsa`` - RSASSA-PKCS1-V1_5, hex (the legacy OCM default);
- ``application/vnd.ocm.signature.rsa.pss`` - RSASSA-PSS, hex (the OCM v2 default);
- ``application/x-pem-file`` - a PEM ``SIGNATURE`` block (header ``Signature Algorithm``) followed by the
  certificate chain, leaf first;
- ``application/vnd.signery.signature.ed25519`` - Ed25519 over the digest bytes, hex (a signery extension).

Decoding refuses inconsistent pairings of media type and algorithm. :mod:`signery.ocm.signing` re-exports the
public names.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .._internal.records import fields_json
from ..errors import MalformedError
from ..keys import HashName, RsaPadding
from .digests import OCM_HASH_NAMES, hash_name
from .normalise import check_algorithm
from .x509chain import load_pem_certificates

RSA_PKCS1 = "RSASSA-PKCS1-V1_5"
RSA_PSS = "RSASSA-PSS"
ED25519 = "ed25519"
SIGNING_ALGORITHMS: tuple[str, ...] = (RSA_PKCS1, RSA_PSS, ED25519)
MEDIA_RSA = "application/vnd.ocm.signature.rsa"
MEDIA_RSA_PSS = "application/vnd.ocm.signature.rsa.pss"
MEDIA_PEM = "application/x-pem-file"
MEDIA_ED25519 = "application/vnd.signery.signature.ed25519"
_PLAIN_MEDIA = {RSA_PKCS1: MEDIA_RSA, RSA_PSS: MEDIA_RSA_PSS, ED25519: MEDIA_ED25519}
MAX_SIGNATURE_CHARS = 256 << 10  # a PEM signature with a long chain is a few KiB
_PEM_SIGNATURE = re.compile(rb"-----BEGIN SIGNATURE-----\r?\n(?P<body>.*?)-----END SIGNATURE-----", re.DOTALL)


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


def encode_signature(algorithm: str, signature: bytes, chain: Sequence[x509.Certificate] = ()) -> dict[str, Any]:
    """The ``signature`` mapping of an entry: the PEM form carrying ``chain`` when there is one, else hex."""
    entry: dict[str, Any] = {"algorithm": algorithm}
    if chain:
        entry.update(mediaType=MEDIA_PEM, value=_signature_pem(algorithm, signature, chain))
    else:
        entry.update(mediaType=_PLAIN_MEDIA[algorithm], value=signature.hex())
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


@dataclass(frozen=True)
class ParsedSignature:
    """One named signature entry of a descriptor, decoded and checked for shape (not yet judged)."""

    name: str
    normalisation: str
    hash_alg: HashName
    digest: str  # the recorded descriptor digest, lowercase hex
    algorithm: str
    media_type: str
    value: bytes
    certificates: tuple[x509.Certificate, ...]
    issuer: str | None

    @property
    def where(self) -> str:
        return f"signatures[{self.name}]"

    def claims(self) -> dict[str, Any]:
        names = "signature algorithm media_type normalisation hash digest issuer"
        return fields_json(self, names, signature=self.name, hash=OCM_HASH_NAMES[self.hash_alg])


def parse_signature(entry: Any, *, index: int = 0) -> ParsedSignature:
    """Decode a ``signatures[]`` entry.

    Raises:
        MalformedError: naming the field (``signatures[acme].digest.hashAlgorithm``...).
    """
    if not isinstance(entry, dict):
        raise MalformedError(f"signatures[{index}] is not a mapping", subject=f"signatures[{index}]")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedError(f"signatures[{index}] has no name", subject=f"signatures[{index}].name")
    where = f"signatures[{name}]"
    dig, sig = entry.get("digest"), entry.get("signature")
    if not isinstance(dig, dict) or not isinstance(sig, dict):
        raise MalformedError(f"{where}: digest and signature are required", subject=where)
    norm = check_algorithm(str(dig.get("normalisationAlgorithm")), field=f"{where}.digest.normalisationAlgorithm")
    h = hash_name(dig.get("hashAlgorithm"), field=f"{where}.digest.hashAlgorithm")
    recorded = str(dig.get("value", "")).lower()
    if not re.fullmatch(r"[0-9a-f]+", recorded) or len(recorded) != (64 if h == "sha256" else 128):
        raise MalformedError(f"{where}.digest.value is not a {h} hex digest", subject=f"{where}.digest.value")
    algorithm, raw, embedded = _decode_signature(sig, f"{where}.signature")
    issuer = sig.get("issuer")
    return ParsedSignature(
        name=name,
        normalisation=norm,
        hash_alg=h,
        digest=recorded,
        algorithm=algorithm,
        media_type=str(sig.get("mediaType")),
        value=raw,
        certificates=tuple(embedded),
        issuer=issuer if isinstance(issuer, str) and issuer else None,
    )


__all__ = [
    "ED25519",
    "MAX_SIGNATURE_CHARS",
    "MEDIA_ED25519",
    "MEDIA_PEM",
    "MEDIA_RSA",
    "MEDIA_RSA_PSS",
    "RSA_PKCS1",
    "RSA_PSS",
    "SIGNING_ALGORITHMS",
    "ParsedSignature",
    "encode_signature",
    "parse_signature",
]
