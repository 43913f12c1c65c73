"""UEFI Secure Boot signature lists (``.esl``) and authenticated variable updates (``.auth``) for PK, KEK, db, dbx.

An ``EFI_SIGNATURE_LIST`` is ``SignatureType`` (GUID) || ``ListSize`` u32 || ``HeaderSize`` u32 (0) ||
``SignatureSize`` u32, then entries ``{SignatureOwner GUID, data}``; an ESL file is one or more lists. X.509
certificates get one list each (``EFI_CERT_X509_GUID``, the DER as data, as ``cert-to-efi-sig-list`` writes),
SHA-256 hashes share one list (``EFI_CERT_SHA256_GUID``, 48-byte entries, as ``hash-to-efi-sig-list`` writes).
GUIDs are stored in their mixed-endian EFI layout (:attr:`uuid.UUID.bytes_le`).

An ``.auth`` is what ``SetVariable`` takes for a time-based authenticated variable (``EFI_VARIABLE_AUTHENTICATION_2``)
followed by the new ESL data, exactly as efitools' ``sign-efi-sig-list`` writes it::

    EFI_TIME (16 bytes) || WIN_CERTIFICATE_UEFI_GUID {dwLength = 24 + len(p7), 0x0200, 0x0EF1,
    EFI_CERT_TYPE_PKCS7_GUID} || p7 || ESL

``p7`` is a bare PKCS#7 SignedData (no ContentInfo): SHA-256, the signer certificate embedded, no signed attributes,
detached content. The content is ``VariableName`` (UTF-16LE, no NUL) || ``VendorGuid`` || ``Attributes`` (u32 LE)
|| ``EFI_TIME`` || ESL, so a signature made for one variable is worthless for another: PK and KEK live under
``EFI_GLOBAL_VARIABLE``, db and dbx under ``EFI_IMAGE_SECURITY_DATABASE_GUID``, and the name differs. Attributes are
NV|BS|RT|TIME_BASED_AUTHENTICATED_WRITE_ACCESS (``0x27``), plus APPEND_WRITE (``0x67``) for an append. An append
made without a time carries an all-zero ``EFI_TIME`` (efitools does the same), since firmware ignores the time of
appends; a replacement carries the time given, or now (UTC).

The SignedData is built by :mod:`signery.formats._cms` through any :class:`~signery.keys.Signer`: the signed bytes are
hashed here and only the digest reaches the signer.

Verification (:func:`check_auth`, and :func:`verify`) rebuilds the signed bytes for the variable the update
is presented as and checks the PKCS#7 against trusted keys. Its verdicts:

- ``policy-violation``: the signature is good, but for *another* variable (``db.auth`` presented as ``dbx``);
- ``tampered``: the signer's key holds, but over another ESL or time;
- ``bad-signature``: the signature does not verify under the key that is said to have made it;
- ``unknown-key``: made by a key that is not trusted.

The lists and their ``EFI_TIME`` are built and parsed in :mod:`signery.formats._uefi_esl`, the updates made,
parsed and checked in :mod:`signery.formats._uefi_auth`; this module re-exports both and is the Format.

Example::

    esl = esl_from_hashes([hashlib.sha256(image).digest()], owner=OWNER)
    auth = make_auth("db", esl, kek_signer, kek_cert, append=True)
    check_auth(auth, "db", trusted=[kek_cert])                       # passes
    check_auth(auth, "dbx", trusted=[kek_cert])                      # VerificationError(policy-violation)
"""

from __future__ import annotations

__all__ = [
    "APPEND_ATTRIBUTES",
    "ATTRIBUTES",
    "EFI_CERT_SHA256_GUID",
    "EFI_CERT_TYPE_PKCS7_GUID",
    "EFI_CERT_X509_GUID",
    "EFI_GLOBAL_VARIABLE",
    "EFI_IMAGE_SECURITY_DATABASE_GUID",
    "FORMAT",
    "VARIABLES",
    "ZERO_TIME",
    "AuthCheck",
    "AuthVariable",
    "EfiTime",
    "SignatureEntry",
    "SignatureList",
    "UefiFormat",
    "UefiOptions",
    "check_auth",
    "detect",
    "esl_certificates",
    "esl_from_certificates",
    "esl_from_hashes",
    "inspect",
    "load_certificate",
    "make_auth",
    "parse_auth",
    "parse_esl",
    "parse_timestamp",
    "sign",
    "signature_list",
    "signed_bytes",
    "variable_of",
    "verify",
]

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from .._fs import atomic_write_bytes
from .._internal.files import read_bounded
from ..errors import MalformedError, Reason, UsageError, VerificationError
from ..keys import Signer, key_id
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustSet
from ._base import Options, SignatureFileFormat, SignRequest, VerifyRequest
from ._common import pkix_keys, read_head, reading, standing
from ._uefi_auth import APPEND_ATTRIBUTES as APPEND_ATTRIBUTES
from ._uefi_auth import ATTRIBUTES as ATTRIBUTES
from ._uefi_auth import AUTH_HEADER_SIZE as AUTH_HEADER_SIZE
from ._uefi_auth import EFI_CERT_TYPE_PKCS7_GUID as EFI_CERT_TYPE_PKCS7_GUID
from ._uefi_auth import EFI_GLOBAL_VARIABLE as EFI_GLOBAL_VARIABLE
from ._uefi_auth import EFI_IMAGE_SECURITY_DATABASE_GUID as EFI_IMAGE_SECURITY_DATABASE_GUID
from ._uefi_auth import EFI_VARIABLE_APPEND_WRITE as EFI_VARIABLE_APPEND_WRITE
from ._uefi_auth import EFI_VARIABLE_BOOTSERVICE_ACCESS as EFI_VARIABLE_BOOTSERVICE_ACCESS
from ._uefi_auth import EFI_VARIABLE_NON_VOLATILE as EFI_VARIABLE_NON_VOLATILE
from ._uefi_auth import EFI_VARIABLE_RUNTIME_ACCESS as EFI_VARIABLE_RUNTIME_ACCESS
from ._uefi_auth import (
    EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS as EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS,
)
from ._uefi_auth import MAX_AUTH_BYTES as MAX_AUTH_BYTES
from ._uefi_auth import VARIABLES as VARIABLES
from ._uefi_auth import WIN_CERT_HEADER as WIN_CERT_HEADER
from ._uefi_auth import WIN_CERT_REVISION as WIN_CERT_REVISION
from ._uefi_auth import WIN_CERT_TYPE_EFI_GUID as WIN_CERT_TYPE_EFI_GUID
from ._uefi_auth import AuthCheck as AuthCheck
from ._uefi_auth import AuthVariable as AuthVariable
from ._uefi_auth import _cert_name, _cert_public, _judge, _signer_cert, _Trusted, _variable
from ._uefi_auth import check_auth as check_auth
from ._uefi_auth import make_auth as make_auth
from ._uefi_auth import parse_auth as parse_auth
from ._uefi_auth import signed_bytes as signed_bytes
from ._uefi_esl import EFI_CERT_SHA256_GUID as EFI_CERT_SHA256_GUID
from ._uefi_esl import EFI_CERT_X509_GUID as EFI_CERT_X509_GUID
from ._uefi_esl import EFI_TIME_SIZE as EFI_TIME_SIZE
from ._uefi_esl import ESL_HEADER as ESL_HEADER
from ._uefi_esl import MAX_ENTRIES as MAX_ENTRIES
from ._uefi_esl import MAX_ESL_BYTES as MAX_ESL_BYTES
from ._uefi_esl import MAX_LISTS as MAX_LISTS
from ._uefi_esl import SHA256_ENTRY as SHA256_ENTRY
from ._uefi_esl import ZERO_GUID as ZERO_GUID
from ._uefi_esl import ZERO_TIME as ZERO_TIME
from ._uefi_esl import EfiTime as EfiTime
from ._uefi_esl import SignatureEntry as SignatureEntry
from ._uefi_esl import SignatureList as SignatureList
from ._uefi_esl import _guid
from ._uefi_esl import esl_certificates as esl_certificates
from ._uefi_esl import esl_from_certificates as esl_from_certificates
from ._uefi_esl import esl_from_hashes as esl_from_hashes
from ._uefi_esl import load_certificate as load_certificate
from ._uefi_esl import parse_esl as parse_esl
from ._uefi_esl import signature_list as signature_list

NAME = "uefi"


# -- the Format ----------------------------------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime:
    """``--timestamp``: ISO 8601, or ``sign-efi-sig-list -t``'s ``YYYY-MM-DD HH:MM:SS``; UTC unless a zone is given."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"cannot read timestamp {text!r}; give e.g. 2026-01-02T03:04:05Z or '2026-01-02 03:04:05' (UTC)",
            subject="--timestamp",
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


AUTH_SUFFIX = ".auth"


def variable_of(path: Path) -> str | None:
    """The variable a file name names (``db.auth``, ``KEK.esl`` -> ``KEK``), if it names one."""
    stem = Path(path).name.split(".", 1)[0]
    return stem if stem in VARIABLES else None


def _auth_path(subject: Path, signature: Path | None) -> Path:
    if signature is not None:
        return Path(signature)
    if subject.suffix == AUTH_SUFFIX:
        return subject
    return subject.with_suffix(AUTH_SUFFIX)


def _looks_auth(path: Path) -> bool:
    """Whether the ``.auth`` file ``path`` has an ``.auth`` header."""
    head = read_head(path, AUTH_HEADER_SIZE) or b""
    if len(head) < AUTH_HEADER_SIZE:
        return False
    _length, revision, cert_type, guid = WIN_CERT_HEADER.unpack_from(head, EFI_TIME_SIZE)
    return bool(
        revision == WIN_CERT_REVISION
        and cert_type == WIN_CERT_TYPE_EFI_GUID
        and guid == EFI_CERT_TYPE_PKCS7_GUID.bytes_le
    )


def _read(path: Path, limit: int, what: str) -> bytes:
    with reading(path):
        return read_bounded(path, limit, what=what)


def _subject_esl(subject: Path, owner: uuid.UUID | str | None) -> bytes:
    """The ESL to sign: ``subject`` itself, or built from it when it is an X.509 certificate (PEM or DER)."""
    data = _read(subject, MAX_ESL_BYTES, "signature list")
    if data.lstrip().startswith(b"-----BEGIN CERTIFICATE"):
        return esl_from_certificates([data], owner)
    try:
        parse_esl(data, source=str(subject))
    except MalformedError:
        if data[:1] == b"\x30":
            try:
                return esl_from_certificates([x509.load_der_x509_certificate(data)], owner)
            except ValueError:
                pass
        raise
    return data


@dataclass(frozen=True)
class UefiOptions(Options):
    """Signing options of UEFI authenticated variables.

    Attributes:
        variable: ``PK``, ``KEK``, ``db`` or ``dbx``; default the one the subject's file name names (``db.esl``).
        append: an APPEND_WRITE update (adds to the variable) instead of a replacement.
        certificate: the signer's X.509 certificate (PEM or DER bytes, PEM text, or a file path); required.
        owner_guid: the SignatureOwner when the subject is a certificate to be made into an ESL (default zero,
            as ``cert-to-efi-sig-list``); a subject that is an ESL already keeps its owners.
        timestamp: the update's EFI_TIME (default: zero for an append, now otherwise).
    """

    variable: str | None = None
    append: bool = False
    certificate: bytes | str | Path | None = None
    owner_guid: uuid.UUID | str | None = None
    timestamp: datetime | str | None = None

    def __post_init__(self) -> None:
        if self.variable is not None:
            _variable(self.variable)
        if self.owner_guid is not None:
            object.__setattr__(self, "owner_guid", _guid(self.owner_guid))
        if isinstance(self.timestamp, str):
            object.__setattr__(self, "timestamp", parse_timestamp(self.timestamp))
        if isinstance(self.timestamp, datetime) and self.timestamp.tzinfo is None:
            raise UsageError("give --timestamp with a time zone (UEFI stores UTC)", subject="--timestamp")

    @property
    def when(self) -> datetime | None:
        return self.timestamp if isinstance(self.timestamp, datetime) else None

    def signer_certificate(self) -> x509.Certificate:
        c = self.certificate
        if c is None:
            raise UsageError(
                "the uefi format needs the signer's certificate: give --certificate", subject="--certificate"
            )
        if isinstance(c, Path) or (isinstance(c, str) and not c.lstrip().startswith("-----BEGIN")):
            return load_certificate(_read(Path(c), 1 << 20, "certificate"), source=str(c))
        return load_certificate(c)


def _trusted_of_set(trust: TrustSet) -> list[_Trusted]:
    return [_Trusted(entry.name, entry.key_id, public, entry) for entry, public in pkix_keys(trust)]


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Write ``X.auth`` (or ``output``): the update of ``variable`` to (or, with ``append``, by) the ESL ``subject``.

    The options are :class:`UefiOptions`; ``now`` is the time of a replacement made without ``timestamp``.
    """
    o: UefiOptions = request.options
    variable = o.variable or variable_of(subject)
    if variable is None:
        raise UsageError(
            f"which variable does {subject.name} update? give --variable PK, KEK, db or dbx", subject="--variable"
        )
    esl = _subject_esl(subject, o.owner_guid)
    when = o.when or (None if o.append else request.now)
    data = make_auth(variable, esl, signer, o.signer_certificate(), append=o.append, timestamp=when)
    out = request.target(subject.with_suffix(AUTH_SUFFIX))
    if out.resolve() == subject.resolve():
        raise UsageError(f"the update would replace {subject}; give --output", subject=str(subject))
    atomic_write_bytes(out, data, mode=0o644)
    if request.progress:
        request.progress(len(esl))
    return out


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Check ``X.auth`` (``subject`` itself, ``signature``, or the ``.auth`` beside an ESL).

    The variable is the one the ``.auth`` file's name names (else the subject's); a name that names none is
    checked as whichever variable it was made for, reported as the ``variable`` claim. With an ESL subject the
    ``.auth`` must carry exactly that ESL.
    """
    path = _auth_path(subject, request.signature)
    if not path.is_file():
        if request.signature is not None:
            raise UsageError(f"{path} does not exist", subject=str(path))
        return request.unsigned(subject)
    data = _read(path, MAX_AUTH_BYTES, "authenticated variable")
    auth = parse_auth(data, source=str(path))
    variable = variable_of(path) or variable_of(subject)
    claims: dict[str, Any] = {"variable": variable, "timestamp": str(auth.timestamp)}
    where = str(subject)
    if path != subject:
        esl = _read(subject, MAX_ESL_BYTES, "signature list")
        if esl != auth.esl:
            check = SignatureCheck(
                NAME,
                None,
                Reason.TAMPERED,
                detail=f"{path.name} carries another signature list than {subject.name}",
                subject=where,
                claims=claims,
            )
            return request.result(subject, check)
    if request.progress:
        request.progress(len(data))
    trusted = _trusted_of_set(request.trust)
    try:
        result = _judge(auth, variable, trusted, source=str(path))
    except VerificationError as exc:
        if exc.reason is Reason.UNSIGNED:
            return request.result(subject)
        check = SignatureCheck(NAME, None, exc.reason, detail=exc.message, subject=exc.subject, claims=claims)
        return request.result(subject, check)
    entry = next(t.entry for t in trusted if t.key_id == result.key_id and t.entry is not None)
    claims.update(variable=result.variable, append=result.append, signer=result.signer)
    kind = "append to" if result.append else "replacement of"
    status, detail = standing(entry, now=request.now, fmt=NAME, claims=claims, label=entry.name) or (
        None,
        f"good {kind} {result.variable} signed by {entry.name}",
    )
    check = SignatureCheck(
        NAME,
        result.key_id,
        status,
        key_name=entry.name,
        detail=detail,
        subject=result.key_id if status else None,
        signed_at=auth.timestamp.to_datetime(),
        claims=claims,
    )
    return request.result(subject, check)


def _inspect(subject: Path, path: Path) -> dict[str, Any]:
    """The update's time, lists and signers, without judging trust."""
    auth = parse_auth(_read(path, MAX_AUTH_BYTES, "authenticated variable"), source=str(path))
    sd = auth.signed_data(source=str(path))
    sigs = []
    for si in sd.signers:
        cert = _signer_cert(sd, si, source=str(path))
        sigs.append(
            {
                "format": NAME,
                "key_id": key_id(_cert_public(cert, source=str(path))) if cert is not None else None,
                "signer": _cert_name(cert) or si.signer_id,
                "claims": {"hash": si.hash_name, "variable": variable_of(path), "timestamp": str(auth.timestamp)},
            }
        )
    lists = [{"type": lst.kind, "entries": len(lst.entries)} for lst in parse_esl(auth.esl, source=str(path))]
    return FORMAT.inspected(subject, sigs, signature=path, timestamp=str(auth.timestamp), lists=lists)


class UefiFormat(SignatureFileFormat):
    """UEFI authenticated variable updates (``db.auth`` from ``db.esl``), as efitools' ``sign-efi-sig-list``."""

    name = NAME
    summary = "a UEFI authenticated variable update X.auth (PK, KEK, db, dbx) from an ESL, as sign-efi-sig-list"
    options_type = UefiOptions

    def signature_file(self, subject: Path, signature: Path | None) -> Path | None:
        """The ``.auth`` (``subject``, ``signature``, or the one beside an ESL), when it is a file."""
        path = _auth_path(subject, signature)
        return path if path.is_file() else None

    def may_carry(self, subject: Path) -> bool:
        subject = Path(subject)
        return subject.suffix == AUTH_SUFFIX or subject.with_suffix(AUTH_SUFFIX).is_file()

    def default_output(self, subject: Path, options: Options) -> Path:
        return Path(subject).with_suffix(AUTH_SUFFIX)


FORMAT = UefiFormat(_sign, _verify, _looks_auth, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
