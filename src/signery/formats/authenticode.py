"""Authenticode signatures of PE/EFI images (UEFI applications, EFI-stub kernels), as ``sbsign`` writes them.

``signery sign X.efi --format authenticode --certificate signer.pem`` writes ``X.efi.signed`` (sbsign's default
name; an existing file is never overwritten): the image padded with zeros to a multiple of 8 bytes, then a
certificate table of ``WIN_CERTIFICATE`` entries (revision 0x0200, type 0x0002 PKCS_SIGNED_DATA, each padded to 8
bytes), the certificate-table data-directory entry pointing at it and the PE checksum recomputed. Signing an image
that is already signed appends another entry, as sbsign does. Each entry holds a ContentInfo/SignedData whose
encapsulated content is an ``SpcIndirectDataContent`` (``SpcPeImageData`` with the ``<<<Obsolete>>>`` file link,
and a DigestInfo holding the Authenticode image hash, see :mod:`signery.formats._pe`), the signer certificate, and
the signed attributes sbsign 0.9.4 writes: contentType, signingTime, messageDigest and OpenSSL's
smimeCapabilities (sbsign writes no SpcSpOpusInfo). With the same key, certificate and signing time the output is
byte for byte sbsign's (RSA PKCS#1 v1.5 is deterministic); ``sbverify --cert`` and ``osslsigncode verify
-CAfile`` accept it.

**Native, not sbsign.** sbsign needs the private key as a file (balenaSign writes it to disk for each request).
signery signs with any :class:`~signery.keys.Signer`: a key file, a key held by the signing service, an HSM key.
So the image is hashed here and only two digests leave the process (one for the signed attributes); the DER is
built by :mod:`signery.formats._cms`, since ``cryptography``'s PKCS7 builder cannot encapsulate an
SpcIndirectDataContent. No external tool is needed to sign or verify.

Verification recomputes the image hash of every entry (``tampered`` when it differs), checks the messageDigest and
the signature with the embedded signer certificate (``tampered`` / ``bad-signature``), then asks the trust set
for that certificate's public key, or for the key of an embedded certificate that issued it (``unknown-key``
otherwise). Certificate validity dates are not judged, as UEFI firmware does not judge them; trust entries'
expiry and revocation are. Claims name the certificate's subject, issuer and serial and the image hash.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .._fs import atomic_write_bytes
from ..errors import MalformedError, Reason, SigneryError, UsageError
from ..keys import HashName, Signer, key_id
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustedKey, TrustSet
from . import _cms, _pe
from ._base import EmbeddedFormat, Options, SignRequest, VerifyRequest, beside
from ._common import reading

NAME = "authenticode"
MAX_CERTIFICATE_FILE_BYTES = 1 << 20
MAX_IMAGE_BYTES = 1 << 30  # EFI-stub kernels with an initramfs are tens of MiB; balenaSign accepts up to 256 MiB
HASHES: tuple[HashName, ...] = ("sha256", "sha384", "sha512")
OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
# SpcPeImageData { flags BIT STRING (empty), file [0] SpcLink { file [2] SpcString { unicode [0] "<<<Obsolete>>>" } } }
_PE_IMAGE_DATA = bytes.fromhex("3025030100a020a21e801c003c003c003c004f00620073006f006c006500740065003e003e003e")


# -- shared with the kmod format: inputs ----------------------------------------------------------------------


def read_input(path: Path, limit: int, *, what: str) -> bytearray:
    """The whole of the file to sign or verify, at most ``limit`` bytes; usage errors name the file."""
    path = Path(path)
    with reading(path, directory=f", not {what}"), path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise MalformedError(f"{path} is larger than {limit} bytes; not {what}", subject=str(path))
        data = bytearray(size)  # one buffer, filled in place: a 64 MiB image is held once, not twice
        got = fh.readinto(data)
        if got != size or fh.read(1):
            raise MalformedError(f"{path} changed while it was read; not {what}", subject=str(path))
    return data


def load_certificate(given: Path | str | bytes, *, source: str = "certificate") -> x509.Certificate:
    """The signer certificate from a file name or its bytes (PEM, the first certificate; or DER)."""
    if isinstance(given, bytes):
        data = given
    else:
        source = str(given)
        try:
            data = bytes(read_input(Path(given), MAX_CERTIFICATE_FILE_BYTES, what="a certificate"))
        except UsageError as exc:
            raise UsageError(exc.message, subject=source, hint="give the signer's certificate (PEM)") from None
    try:
        return _cms.readable_certificate(data, pem=data.lstrip().startswith(b"-----BEGIN"))
    except ValueError:
        raise UsageError(f"{source} is not an X.509 certificate", subject=source) from None


def required_certificate(given: Path | str | bytes | None, *, missing: str, hint: str) -> x509.Certificate:
    """The signer certificate the ``certificate`` option names; without one, the usage error ``missing``."""
    if given is None:
        raise UsageError(missing, subject="--certificate", hint=hint)
    return load_certificate(given)


@dataclass(frozen=True)
class CertificateOptions(Options):
    """The options of a format that signs a CMS SignedData with the signer's certificate: the certificate and the
    hash (one of ``HASHES``); each format words its messages (the class variables)."""

    certificate: Path | str | bytes | None = None
    hash_algorithm: str = "sha256"

    hash_label: ClassVar[str]  # "unsupported {hash_label} 'md5'; use {hash_choices}"
    hash_choices: ClassVar[str]
    missing_certificate: ClassVar[str]  # the usage error when no certificate is given, and its hint
    certificate_hint: ClassVar[str]

    def __post_init__(self) -> None:
        if self.hash_algorithm not in HASHES:
            raise UsageError(
                f"unsupported {self.hash_label} {self.hash_algorithm!r}; use {self.hash_choices}",
                subject="--hash-algorithm",
            )

    @property
    def hash_name(self) -> HashName:
        return self.hash_algorithm  # type: ignore[return-value]  # checked by __post_init__

    def signer_certificate(self) -> x509.Certificate:
        """The certificate to sign with; without one, the format's usage error."""
        return required_certificate(self.certificate, missing=self.missing_certificate, hint=self.certificate_hint)


def certificate_summary(cert: x509.Certificate) -> dict[str, str]:
    """Subject, issuer and serial (hex) of ``cert``, for claims and ``inspect``."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
    }


def certificate_key(cert: x509.Certificate) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
    """The RSA or EC public key of ``cert``; ``None`` for another or an unreadable one (parsed lazily, so hostile
    certificate bytes fail here rather than when loaded)."""
    try:
        pub = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None
    return pub if isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None


# -- shared with the kmod format: trust -----------------------------------------------------------------------

MAX_CHAIN = 4  # signer certificate, intermediates, a CA whose key is trusted


def trusted_chain(trust: TrustSet, cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> TrustedKey | None:
    """The PKIX trust entry vouching for ``cert``: its own key, or a trusted key that signed it or one of the
    certificates in ``pool`` that (directly or through at most :data:`MAX_CHAIN` of them) issued it."""
    keys = list(trust.of_kind("pkix"))
    current = cert
    for _ in range(MAX_CHAIN):
        current_key = certificate_key(current)
        if current_key is None:
            return None
        entry = trust.get(key_id(current_key))
        if entry is not None and entry.kind == "pkix":
            return entry
        for known in keys:
            if current.issuer != current.subject and _signed_by(current, known):
                return known
        issuer = next(
            (c for c in pool if c is not current and c.subject == current.issuer and _issued(c, current)), None
        )
        if issuer is None:
            return None
        current = issuer
    return None


def _issued(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signed_by(cert: x509.Certificate, entry: TrustedKey) -> bool:
    """Whether the trusted key ``entry`` signed ``cert`` (PKCS#1 v1.5 or ECDSA)."""
    try:
        pub = entry.public_key()
        alg = cert.signature_hash_algorithm
        if alg is None:
            return False
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), alg)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(alg))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm, SigneryError):
        return False
    return True


def entry_problem(entry: TrustedKey, *, now: datetime, fmt: str, claims: dict[str, Any]) -> tuple[Reason, str] | None:
    """Why a trusted ``entry`` may not vouch for a signature of format ``fmt`` now, or ``None``."""
    status = entry.status_at(now)
    if status is Reason.REVOKED_KEY:
        return status, f"key {entry.name} is revoked"
    if status is Reason.EXPIRED_KEY:
        return status, f"trust in key {entry.name} expired on {entry.expires:%Y-%m-%d}"
    violation = entry.constraints.violation(fmt=fmt, claims=claims)
    if violation:
        return Reason.POLICY_VIOLATION, violation
    return None


def spc_indirect_data(hash_name: str, digest: bytes) -> bytes:
    """The DER SpcIndirectDataContent for an image hash, as sbsign and signtool write it."""
    return _cms.seq(
        _cms.seq(_cms.oid(OID_SPC_PE_IMAGE_DATA), _PE_IMAGE_DATA),
        _cms.seq(_cms.algorithm(_cms.OID_OF_HASH[hash_name], null=True), _cms.octets(digest)),
    )


def _parse_spc(node: _cms.Node) -> tuple[HashName, bytes]:
    """The image hash algorithm and value an SpcIndirectDataContent holds."""
    parts = node.expect(0x30, "SpcIndirectDataContent").children(2)
    if len(parts) != 2:
        raise MalformedError(f"SpcIndirectDataContent at offset {node.offset} has {len(parts)} fields")
    data = parts[0].expect(0x30, "SpcAttributeTypeAndOptionalValue").children(2)
    if not data or _cms.decode_oid(data[0]) != OID_SPC_PE_IMAGE_DATA:
        raise MalformedError(f"the signed content at offset {parts[0].offset} is not for a PE image")
    digest_info = parts[1].expect(0x30, "DigestInfo").children(2)
    if len(digest_info) != 2:
        raise MalformedError(f"bad DigestInfo at offset {parts[1].offset}")
    alg = _cms.decode_algorithm(digest_info[0])
    if alg not in _cms.HASH_OIDS:
        raise MalformedError(f"the image hash uses {alg}, which is refused (need SHA-256 or better)")
    return _cms.HASH_OIDS[alg], digest_info[1].expect(0x04, "image digest").content


@dataclass(frozen=True)
class AuthenticodeOptions(CertificateOptions):
    """Signing options of the Authenticode format.

    Attributes:
        certificate: the signer's X.509 certificate (a PEM or DER file, or its bytes); required for signing, it is
            embedded and must hold the signer's public key.
        hash_algorithm: the image hash and signature digest, ``sha256`` (default, what UEFI firmware expects),
            ``sha384`` or ``sha512``.
    """

    hash_label: ClassVar[str] = "Authenticode hash"
    hash_choices: ClassVar[str] = "sha256, sha384 or sha512"
    missing_certificate: ClassVar[str] = "Authenticode signing needs the signer's certificate"
    certificate_hint: ClassVar[str] = "give --certificate signer.pem (the X.509 certificate of the signing key)"


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Write ``subject`` with an Authenticode signature by ``signer`` added (default ``SUBJECT.signed``)."""
    o: AuthenticodeOptions = request.options
    cert, hash_name = o.signer_certificate(), o.hash_name
    data = read_input(subject, MAX_IMAGE_BYTES, what="a PE image")
    img = _pe.prepare_for_signing(data, _pe.parse(data, source=str(subject)), source=str(subject))
    digest = _pe.image_hash(data, img, hash_name, request.progress)
    spc = spc_indirect_data(hash_name, digest)
    signed_data = _cms.build_signed_data(
        signer,
        cert,
        content_digest=_cms.hash_bytes(hash_name, _cms.der_contents(spc)),
        hash_name=hash_name,
        content_type=OID_SPC_INDIRECT_DATA,
        content=spc,
        signed_attributes=[_cms.signing_time(request.now or datetime.now(UTC)), _cms.SMIME_CAPABILITIES],
    )
    _pe.add_certificate(data, img, _cms.content_info(signed_data))
    out = request.target(default_output(subject))
    atomic_write_bytes(out, data, mode=0o644)
    return out


def default_output(subject: Path) -> Path:
    return beside(subject, ".signed")


def _read_signed(subject: Path) -> tuple[bytearray, _pe.PEImage, list[_pe.WinCertificate]]:
    data = read_input(subject, MAX_IMAGE_BYTES, what="a PE image")
    img = _pe.parse(data, source=str(subject))
    return data, img, _pe.certificates(data, img, source=str(subject))


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Judge every Authenticode signature in the image ``subject`` against ``trust``."""
    if request.signature is not None:
        raise UsageError("Authenticode signatures live inside the image; there is no detached signature file")
    data, img, entries = _read_signed(subject)
    hashes: dict[str, bytes] = {}

    def image_digest(name: HashName) -> bytes:
        if name not in hashes:
            hashes[name] = _pe.image_hash(data, img, name, request.progress if not hashes else None)
        return hashes[name]

    return request.result(subject, *(_check_entry(e, image_digest, request.trust, request.now) for e in entries))


def _check_entry(entry: _pe.WinCertificate, image_digest: Any, trust: TrustSet, now: datetime) -> SignatureCheck:
    where = f"certificate table entry at offset {entry.offset}"
    if entry.revision != _pe.WIN_CERT_REVISION_2_0 or entry.type != _pe.WIN_CERT_TYPE_PKCS_SIGNED_DATA:
        detail = f"{where} is revision 0x{entry.revision:04x} type 0x{entry.type:04x}, not a PKCS#7 signature"
        return SignatureCheck(NAME, None, Reason.MALFORMED, detail=detail, subject=where)
    try:
        sd = _cms.parse_content_info(entry.content, what=where, allow_trailing=True)
        if sd.content_type != OID_SPC_INDIRECT_DATA or sd.content is None:
            raise MalformedError(f"{where} does not sign an SpcIndirectDataContent")
        if len(sd.signers) != 1:
            raise MalformedError(f"{where} has {len(sd.signers)} signers; Authenticode has exactly one")
        hash_name, recorded = _parse_spc(sd.content)
    except SigneryError as exc:
        return SignatureCheck(NAME, None, exc.reason, detail=exc.message, subject=where)
    si = sd.signers[0]
    cert = sd.signer_certificate(si)
    claims: dict[str, Any] = {"hash": hash_name, "image_hash": recorded.hex()}
    signed_at = _cms.signing_time_of(si)
    if cert is None:
        detail = f"signed by {si.signer_id}, whose certificate the signature does not carry"
        return SignatureCheck(NAME, None, Reason.UNKNOWN_KEY, detail=detail, subject=where, claims=claims)
    claims.update(certificate_summary(cert))
    public = certificate_key(cert)
    kid = key_id(public) if public is not None else None

    def check(reason: Reason | None, detail: str, key_name: str | None = None) -> SignatureCheck:
        return SignatureCheck(
            NAME,
            kid,
            reason,
            key_name=key_name,
            detail=detail,
            subject=claims["subject"],
            signed_at=signed_at,
            claims=claims,
        )

    if kid is None or public is None:
        return check(Reason.BAD_SIGNATURE, "the signer certificate holds no readable RSA or EC public key")
    actual = image_digest(hash_name)
    if not hmac.compare_digest(actual, recorded):
        return check(Reason.TAMPERED, f"the image hash is {actual.hex()}, the signature was made over {recorded.hex()}")
    try:
        if si.hash_name != hash_name:
            raise MalformedError(f"the signer digests with {si.hash_name} but the image hash is {hash_name}")
        content_digest = _cms.hash_bytes(si.hash_name, sd.content.content)
        _cms.check_signer(si, public, content_digest=content_digest, content_type=OID_SPC_INDIRECT_DATA)
    except SigneryError as exc:
        return check(exc.reason, f"signature by {claims['subject']}: {exc.message}")
    found = trusted_chain(trust, cert, sd.certificates)
    if found is None:
        return check(Reason.UNKNOWN_KEY, f"signed by {claims['subject']}, whose key is not trusted")
    trusted = found
    if trusted.key_id != kid:
        claims["trusted_issuer"] = trusted.name
    problem = entry_problem(trusted, now=now, fmt=NAME, claims={})
    if problem is not None:
        return check(problem[0], problem[1], trusted.name)
    return check(None, f"good signature by {claims['subject']} ({trusted.name})", trusted.name)


def _detect(subject: Path, signature: Path | None) -> bool:
    """Whether ``subject`` is a PE image with a non-empty certificate table (a few hundred bytes read)."""
    return signature is None and _pe.looks_signed(subject)


def _inspect(subject: Path, signature: Path | None) -> dict[str, Any]:
    """The signatures in the certificate table: signer certificate, hash, recorded image hash, signing time."""
    data, img, entries = _read_signed(subject)
    out: list[dict[str, Any]] = []
    for e in entries:
        item: dict[str, Any] = {"format": NAME, "offset": e.offset, "revision": e.revision, "type": e.type}
        try:
            sd = _cms.parse_content_info(e.content, what=f"entry at offset {e.offset}", allow_trailing=True)
            if sd.content is not None:
                hash_name, recorded = _parse_spc(sd.content)
                item["claims"] = {"hash": hash_name, "image_hash": recorded.hex()}
            for si in sd.signers[:1]:
                cert = sd.signer_certificate(si)
                when = _cms.signing_time_of(si)
                item["signed_at"] = when.isoformat().replace("+00:00", "Z") if when else None
                if cert is not None:
                    item.setdefault("claims", {}).update(certificate_summary(cert))
                    pub = certificate_key(cert)
                    if pub is not None:
                        item["key_id"] = key_id(pub)
            item["certificates"] = [c.subject.rfc4514_string() for c in sd.certificates]
        except SigneryError as exc:
            item["error"] = exc.message
        out.append(item)
    return {
        "format": NAME,
        "subject": str(subject),
        "machine": f"0x{img.machine:04x}",
        "checksum": f"0x{img.checksum:08x}",
        "image_hash": _pe.image_hash(data, img, "sha256").hex(),
        "signatures": out,
    }


class AuthenticodeFormat(EmbeddedFormat):
    """Authenticode PE/EFI image signatures (sbsign's ``X.signed``), for UEFI Secure Boot and kexec."""

    name = NAME
    summary = "an Authenticode signature inside a PE/EFI image (X.signed), as sbsign writes it (needs --certificate)"
    options_type = AuthenticodeOptions

    def may_carry(self, subject: Path) -> bool:
        try:
            with Path(subject).open("rb") as fh:
                return fh.read(2) == b"MZ"
        except OSError:
            return False

    def default_output(self, subject: Path, options: Options) -> Path:
        return default_output(Path(subject))


FORMAT = AuthenticodeFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
