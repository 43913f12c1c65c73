"""UEFI authenticated variable updates (``.auth``, ``EFI_VARIABLE_AUTHENTICATION_2``): making, parsing and
checking them, as efitools' ``sign-efi-sig-list`` writes them::

    EFI_TIME (16 bytes) || WIN_CERTIFICATE_UEFI_GUID {dwLength = 24 + len(p7), 0x0200, 0x0EF1,
    EFI_CERT_TYPE_PKCS7_GUID} || p7 || ESL

The PKCS#7 signs ``VariableName`` (UTF-16LE, no NUL) || ``VendorGuid`` || ``Attributes`` (u32 LE) || ``EFI_TIME``
|| ESL; see :mod:`signery.formats.uefi` for the whole story and the verdicts. The public names are re-exported by
:mod:`signery.formats.uefi`.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import MalformedError, Reason, UsageError, VerificationError
from ..keys import PublicKey, Signer, key_id, short_id
from ..trust import TrustedKey
from . import _cms
from ._uefi_esl import EFI_TIME_SIZE, MAX_ESL_BYTES, ZERO_TIME, EfiTime, load_certificate, parse_esl

EFI_CERT_TYPE_PKCS7_GUID = uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE_GUID = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")

VARIABLES: dict[str, uuid.UUID] = {
    "PK": EFI_GLOBAL_VARIABLE,
    "KEK": EFI_GLOBAL_VARIABLE,
    "db": EFI_IMAGE_SECURITY_DATABASE_GUID,
    "dbx": EFI_IMAGE_SECURITY_DATABASE_GUID,
}

EFI_VARIABLE_NON_VOLATILE = 0x01
EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x02
EFI_VARIABLE_RUNTIME_ACCESS = 0x04
EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
EFI_VARIABLE_APPEND_WRITE = 0x40
ATTRIBUTES = (
    EFI_VARIABLE_NON_VOLATILE
    | EFI_VARIABLE_BOOTSERVICE_ACCESS
    | EFI_VARIABLE_RUNTIME_ACCESS
    | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS
)  # 0x27
APPEND_ATTRIBUTES = ATTRIBUTES | EFI_VARIABLE_APPEND_WRITE  # 0x67

WIN_CERT_REVISION = 0x0200
WIN_CERT_TYPE_EFI_GUID = 0x0EF1
WIN_CERT_HEADER = struct.Struct("<IHH16s")  # dwLength, wRevision, wCertificateType, CertType
AUTH_HEADER_SIZE = EFI_TIME_SIZE + WIN_CERT_HEADER.size  # 40: where the PKCS#7 starts
MAX_AUTH_BYTES = MAX_ESL_BYTES + (64 << 10)


# -- authenticated variables ---------------------------------------------------------------------------------------


def _variable(variable: str) -> uuid.UUID:
    try:
        return VARIABLES[variable]
    except KeyError:
        raise UsageError(
            f"unknown secure boot variable {variable!r}; choose one of {', '.join(VARIABLES)}", subject=variable
        ) from None


def signed_bytes(variable: str, attributes: int, timestamp: EfiTime, esl: bytes) -> bytes:
    """What an ``.auth``'s PKCS#7 signs: name (UTF-16LE, no NUL) || vendor GUID || attributes || EFI_TIME || ESL."""
    guid = _variable(variable)
    return variable.encode("utf-16-le") + guid.bytes_le + struct.pack("<I", attributes) + timestamp.to_bytes() + esl


def _efi_time(timestamp: datetime | EfiTime | None, *, append: bool) -> EfiTime:
    if isinstance(timestamp, EfiTime):
        return timestamp
    if timestamp is not None:
        return EfiTime.from_datetime(timestamp)
    return ZERO_TIME if append else EfiTime.from_datetime(datetime.now(UTC))


def make_auth(
    variable: str,
    esl: bytes,
    signer: Signer,
    certificate: bytes | str | x509.Certificate,
    *,
    append: bool = False,
    timestamp: datetime | EfiTime | None = None,
) -> bytes:
    """The ``.auth`` update of ``variable`` (PK, KEK, db, dbx) to (or, with ``append``, by) ``esl``.

    ``certificate`` is the signer's certificate (PEM, DER or loaded), embedded and named in the SignedData.
    ``timestamp`` defaults to zero for an append and to now otherwise (as ``sign-efi-sig-list``). An empty ``esl``
    is allowed: it is how a variable is deleted.
    """
    _variable(variable)
    parse_esl(esl, source="the ESL to sign")
    cert = load_certificate(certificate)
    when = _efi_time(timestamp, append=append)
    attributes = APPEND_ATTRIBUTES if append else ATTRIBUTES
    digest = hashlib.sha256(signed_bytes(variable, attributes, when, esl)).digest()
    p7 = _cms.build_signed_data(signer, cert, content_digest=digest, hash_name="sha256")
    header = WIN_CERT_HEADER.pack(
        WIN_CERT_HEADER.size + len(p7), WIN_CERT_REVISION, WIN_CERT_TYPE_EFI_GUID, EFI_CERT_TYPE_PKCS7_GUID.bytes_le
    )
    return when.to_bytes() + header + p7 + esl


# What cryptography raises while it lazily parses a hostile embedded certificate's fields.
_CERT_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)


@dataclass(frozen=True)
class AuthVariable:
    """A parsed ``.auth``: its time, its PKCS#7 (as stored) and the ESL it carries."""

    timestamp: EfiTime
    pkcs7: bytes
    esl: bytes

    def signed_data(self, *, source: str = "auth") -> _cms.SignedData:
        """The SignedData: bare, as the UEFI specification and efitools write it, or ContentInfo-wrapped (older
        tools), which EDK2 accepts too."""
        top = _cms.read_der(self.pkcs7, what=source).expect(0x30, "SignedData")
        first = top.children(6)[:1]
        try:
            if first and first[0].tag == 0x06:  # ContentInfo { contentType OID, [0] content }
                return _cms.parse_content_info(self.pkcs7, what=source)
            return _cms.parse_signed_data(self.pkcs7, what=source)
        except _CERT_ERRORS:  # cryptography's certificate loader raises InvalidVersion, not only ValueError
            raise MalformedError(f"{source}: an embedded certificate has an invalid version", subject=source) from None


def parse_auth(data: bytes, *, source: str = "auth") -> AuthVariable:
    """Split an ``.auth`` into its parts; a header that is not ``EFI_VARIABLE_AUTHENTICATION_2`` is ``malformed``."""
    if len(data) > MAX_AUTH_BYTES:
        raise MalformedError(f"{source} is too large to be an authenticated variable update", subject=source)
    if len(data) < AUTH_HEADER_SIZE:
        raise MalformedError(f"{source} is too short to be an authenticated variable update", subject=source)
    length, revision, cert_type, guid = WIN_CERT_HEADER.unpack_from(data, EFI_TIME_SIZE)
    if revision != WIN_CERT_REVISION or cert_type != WIN_CERT_TYPE_EFI_GUID:
        raise MalformedError(
            f"{source}: not a WIN_CERTIFICATE_UEFI_GUID (revision 0x{revision:04x}, type 0x{cert_type:04x})",
            subject=source,
        )
    if uuid.UUID(bytes_le=guid) != EFI_CERT_TYPE_PKCS7_GUID:
        raise MalformedError(f"{source}: the certificate type is not EFI_CERT_TYPE_PKCS7_GUID", subject=source)
    if length <= WIN_CERT_HEADER.size or EFI_TIME_SIZE + length > len(data):
        raise MalformedError(f"{source}: the authentication header's length {length} is wrong", subject=source)
    end = EFI_TIME_SIZE + length
    return AuthVariable(EfiTime.parse(data[:EFI_TIME_SIZE]), data[AUTH_HEADER_SIZE:end], data[end:])


@dataclass(frozen=True)
class AuthCheck:
    """A good ``.auth``: for which variable, whether an append, when, by which key."""

    variable: str
    append: bool
    timestamp: EfiTime
    key_id: str
    signer: str  # the signer certificate's subject, when embedded
    esl: bytes = field(repr=False)


def _cert_name(cert: x509.Certificate | None) -> str:
    if cert is None:
        return ""
    try:
        return cert.subject.rfc4514_string()
    except _CERT_ERRORS:
        return "an unreadable name"


def _signer_cert(sd: _cms.SignedData, si: _cms.SignerInfo, *, source: str) -> x509.Certificate | None:
    """The embedded certificate ``si`` names. cryptography parses certificate fields lazily, so a damaged embedded
    certificate raises ``ValueError`` only here: that is a malformed update."""
    try:
        return sd.signer_certificate(si)
    except _CERT_ERRORS:
        raise MalformedError(f"{source}: an embedded certificate cannot be read", subject=source) from None


def _cert_public(cert: x509.Certificate, *, source: str) -> PublicKey:
    """The certificate's public key; one cryptography cannot read, or of a type signery does not use, is malformed."""
    try:
        public = cert.public_key()
    except _CERT_ERRORS:
        raise MalformedError(f"{source}: the signer certificate's public key cannot be read", subject=source) from None
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise MalformedError(f"{source}: the signer certificate holds an unsupported key type", subject=source)
    return public


def _matches(si: _cms.SignerInfo, public: PublicKey, auth: AuthVariable, variable: str) -> bool | Reason:
    """Check ``si`` under ``public`` as an update of ``variable``: whether it is an append, or why it fails
    (``tampered``: this key signed other bytes; ``bad-signature``: not this key's signature)."""
    worst = Reason.BAD_SIGNATURE
    for append in (False, True):
        attrs = APPEND_ATTRIBUTES if append else ATTRIBUTES
        digest = hashlib.new(si.hash_name, signed_bytes(variable, attrs, auth.timestamp, auth.esl)).digest()
        try:
            _cms.check_signer(si, public, content_digest=digest, content_type=_cms.OID_DATA)
        except VerificationError as exc:
            if exc.reason is Reason.TAMPERED:
                worst = Reason.TAMPERED
            continue
        return append
    return worst


@dataclass(frozen=True)
class _Trusted:
    name: str
    key_id: str
    public: PublicKey
    entry: TrustedKey | None = None  # when from a trust set


def _judge(auth: AuthVariable, variable: str | None, trusted: Sequence[_Trusted], *, source: str) -> AuthCheck:
    """The one verdict on ``auth`` presented as ``variable`` (``None``: whichever it was made for)."""
    sd = auth.signed_data(source=source)
    if not sd.signers:
        raise VerificationError(f"{source} carries no signer", reason=Reason.UNSIGNED, subject=source)
    if sd.content is not None:
        raise MalformedError(
            f"{source}: the PKCS#7 encapsulates content; an .auth signature is detached", subject=source
        )
    by_id = {t.key_id: t for t in trusted}
    failure: VerificationError | None = None
    wanted = [variable] if variable is not None else list(VARIABLES)
    for si in sd.signers:
        cert = _signer_cert(sd, si, source=source)
        if cert is not None:
            kid = key_id(_cert_public(cert, source=source))
            keys = [by_id[kid]] if kid in by_id else []
            if not keys:
                failure = failure or VerificationError(
                    f"{source} is signed by {_cert_name(cert) or si.signer_id} (key {short_id(kid)}), "
                    "which is not trusted",
                    reason=Reason.UNKNOWN_KEY,
                    subject=kid,
                )
                continue
        else:
            keys = list(trusted)
        for t in keys:
            reasons: list[Reason] = []
            for var in wanted:
                outcome = _matches(si, t.public, auth, var)
                if isinstance(outcome, bool):
                    return AuthCheck(var, outcome, auth.timestamp, t.key_id, _cert_name(cert), auth.esl)
                reasons.append(outcome)
            if Reason.TAMPERED not in reasons and cert is None:
                continue  # not this key's signature
            # This key made the signature (an RSA signature recovers to another digest, or the signer certificate
            # names the key; ECDSA cannot tell the two apart): was it made for another variable?
            for other in (v for v in VARIABLES if v not in wanted):
                if isinstance(_matches(si, t.public, auth, other), bool):
                    raise VerificationError(
                        f"{source} is an update of {other}, signed by {t.name}; it is not valid for {variable}",
                        reason=Reason.POLICY_VIOLATION,
                        subject=source,
                    )
            if Reason.TAMPERED in reasons:
                failure = VerificationError(
                    f"{source} was signed by {t.name} ({short_id(t.key_id)}) over another signature list or time",
                    reason=Reason.TAMPERED,
                    subject=source,
                )
            else:
                failure = VerificationError(
                    f"the signature of {source} does not verify under its signer's key {t.name}",
                    reason=Reason.BAD_SIGNATURE,
                    subject=source,
                )
    if failure is not None:
        raise failure
    raise VerificationError(
        f"{source} is signed by a key that is not trusted (tried {len(trusted)})",
        reason=Reason.UNKNOWN_KEY,
        subject=source,
    )


def _trusted_of(items: Iterable[PublicKey | x509.Certificate | bytes | str]) -> list[_Trusted]:
    out = []
    for item in items:
        if isinstance(item, bytes | str | x509.Certificate):
            cert = load_certificate(item)
            pub: PublicKey = _cert_public(cert, source="trusted certificate")
            name = _cert_name(cert)
        else:
            pub, name = item, ""
        kid = key_id(pub)
        out.append(_Trusted(name or short_id(kid), kid, pub))
    return out


def check_auth(
    data: bytes,
    variable: str,
    *,
    trusted: Iterable[PublicKey | x509.Certificate | bytes | str],
    append: bool | None = None,
    source: str = "auth",
) -> AuthCheck:
    """Verify an ``.auth`` as an update of ``variable`` signed by one of ``trusted`` (keys or certificates).

    ``append`` given requires that kind of update. Raises :class:`~signery.errors.VerificationError`
    (``policy-violation``: made for another variable, or not the kind of update required; ``tampered``;
    ``bad-signature``; ``unknown-key``) or :class:`~signery.errors.MalformedError`.
    """
    _variable(variable)
    auth = parse_auth(data, source=source)
    result = _judge(auth, variable, _trusted_of(trusted), source=source)
    if append is not None and result.append != append:
        want = "an append" if append else "a replacement"
        raise VerificationError(f"{source} is not {want} of {variable}", reason=Reason.POLICY_VIOLATION, subject=source)
    return result


__all__ = [
    "APPEND_ATTRIBUTES",
    "ATTRIBUTES",
    "AUTH_HEADER_SIZE",
    "EFI_CERT_TYPE_PKCS7_GUID",
    "EFI_GLOBAL_VARIABLE",
    "EFI_IMAGE_SECURITY_DATABASE_GUID",
    "EFI_VARIABLE_APPEND_WRITE",
    "EFI_VARIABLE_BOOTSERVICE_ACCESS",
    "EFI_VARIABLE_NON_VOLATILE",
    "EFI_VARIABLE_RUNTIME_ACCESS",
    "EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS",
    "MAX_AUTH_BYTES",
    "VARIABLES",
    "WIN_CERT_HEADER",
    "WIN_CERT_REVISION",
    "WIN_CERT_TYPE_EFI_GUID",
    "AuthCheck",
    "AuthVariable",
    "check_auth",
    "make_auth",
    "parse_auth",
    "signed_bytes",
]
