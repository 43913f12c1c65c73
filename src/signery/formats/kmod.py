"""Linux kernel module signatures, as the kernel's ``scripts/sign-file`` appends them.

A signed module is ``module || CMS || struct module_signature || "~Module signature appended~\\n"``:

- the CMS is a ContentInfo/SignedData, detached (``data``, no eContent), with **no certificates and no signed
  attributes**, one signer named by the issuer and serial number of its certificate, digest SHA-512 by default
  (``CONFIG_MODULE_SIG_SHA512``, what balenaOS builds with) and an RSA PKCS#1 v1.5 (or ECDSA) signature over
  the module's digest;
- ``struct module_signature`` (``include/linux/module_signature.h``) is 12 bytes: ``algo = hash = 0``, ``id_type
  = PKEY_ID_PKCS7 (2)``, ``signer_len = key_id_len = 0``, three zero pad bytes, then ``sig_len``, the CMS length as
  a big-endian u32.

With the same key and certificate the bytes equal ``sign-file``'s (it writes the digest AlgorithmIdentifiers
without parameters, as here). ``modinfo`` shows ``sig_id: PKCS#7``, ``signer``, ``sig_key`` and ``sig_hashalgo``;
the kernel checks the signature against its builtin keys (balenaOS: ``kmod.crt``).

Signing is native, like Authenticode: the module is hashed here and only its digest reaches the
:class:`~signery.keys.Signer` (a key file, the signing service, an HSM), so no private key file is ever needed. The
certificate (option ``certificate``, required) supplies the issuer and serial that name the signer.

**Output.** ``X.signed`` by default, the name balenaSign's ``sign-kmod`` client writes, and never over an existing
file. ``sign-file MODULE`` without a destination signs in place; signery does that with ``--output X --force``
(the file is replaced atomically). Note that ``modinfo`` takes a path only when it ends in ``.ko``.

**Re-signing.** An already-signed module is refused: ``sign-file`` would append a second signature, of which the
kernel checks only the outer one, over the inner one as if it were code. With ``replace`` every appended
signature is stripped first.

Verification strips the signature and checks the CMS over the module with the trust set's PKIX keys: an embedded
certificate naming the signer is used when there is one, otherwise each trusted key is tried (the signature names
only an issuer and serial, which it does not sign: the kernel finds its key by them, signery by the signature
itself). An RSA signature that a trusted key opens but which names another digest is
``tampered``; one that no trusted key opens is ``unknown-key``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from .._fs import atomic_write_bytes
from ..errors import MalformedError, Reason, SigneryError, UsageError
from ..keys import HashName, PublicKey, Signer, key_id
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustedKey, TrustSet
from . import _cms
from ._base import EmbeddedFormat, Options, Progress, SignRequest, VerifyRequest
from ._common import pkix_keys
from ._sniff import KMOD_MAGIC
from .authenticode import (
    CertificateOptions,
    certificate_key,
    default_output,
    entry_problem,
    read_input,
    trusted_chain,
)

NAME = "kmod"
MAGIC = KMOD_MAGIC  # "~Module signature appended~\n"
PKEY_ID_PKCS7 = 2
_TRAILER = struct.Struct(">BBBBB3sI")  # algo, hash, id_type, signer_len, key_id_len, __pad[3], sig_len
TRAILER_BYTES = _TRAILER.size + len(MAGIC)  # 40
MAX_MODULE_BYTES = 1 << 30  # the largest modules (GPU drivers) are ~100 MiB
MAX_SIGNATURE_BYTES = 1 << 16  # sign-file's CMS is ~0.5 KiB; with certificates a few KiB
MAX_NESTED = 16  # signatures stripped by ``replace`` (sign-file appends one per run)
HASHES: tuple[HashName, ...] = ("sha256", "sha384", "sha512")


@dataclass(frozen=True)
class SplitModule:
    module_len: int  # the signed bytes: data[:module_len]
    signature: bytes  # the CMS
    sig_offset: int


def split(data: bytes | bytearray, *, source: str) -> SplitModule | None:
    """The module and its appended CMS, or ``None`` for an unsigned module; a damaged trailer is ``malformed``."""
    if len(data) < len(MAGIC) or data[-len(MAGIC) :] != MAGIC:
        return None
    if len(data) < TRAILER_BYTES:
        raise MalformedError(f"{source}: signature marker without a module_signature (offset 0)", subject=source)
    at = len(data) - TRAILER_BYTES
    algo, hash_, id_type, signer_len, key_id_len, pad, sig_len = _TRAILER.unpack_from(data, at)
    if id_type != PKEY_ID_PKCS7:
        raise MalformedError(f"{source}: module signature id_type {id_type} is not PKCS#7 (offset {at + 2})")
    if algo or hash_ or signer_len or key_id_len or pad != b"\0\0\0":
        raise MalformedError(f"{source}: a PKCS#7 module_signature must have zero algo, hash, lengths (offset {at})")
    if not 0 < sig_len <= min(at, MAX_SIGNATURE_BYTES):
        raise MalformedError(f"{source}: signature length {sig_len} out of range (offset {at + 8})", subject=source)
    return SplitModule(at - sig_len, bytes(data[at - sig_len : at]), at - sig_len)


def strip(data: bytes | bytearray, *, source: str) -> bytes | bytearray:
    """``data`` without any appended signatures."""
    for _ in range(MAX_NESTED):
        found = split(data, source=source)
        if found is None:
            return data
        data = data[: found.module_len]
    raise MalformedError(f"{source}: more than {MAX_NESTED} nested signatures", subject=source)


def signed_module(module: bytes | bytearray, cms: bytes) -> bytes:
    """``module`` with the ContentInfo ``cms`` appended as sign-file appends it."""
    return bytes(module) + cms + _TRAILER.pack(0, 0, PKEY_ID_PKCS7, 0, 0, b"\0\0\0", len(cms)) + MAGIC


@dataclass(frozen=True)
class KmodOptions(CertificateOptions):
    """Signing options of the kernel-module format.

    Attributes:
        certificate: the signer's X.509 certificate (PEM or DER file, or its bytes); required: its issuer and serial
            name the signer, and the kernel must hold it (``CONFIG_SYSTEM_TRUSTED_KEYS``, balenaOS ``kmod.crt``).
        hash_algorithm: ``sha512`` (default, ``CONFIG_MODULE_SIG_SHA512``), ``sha384`` or ``sha256``.
        replace: strip an existing signature and sign again, instead of refusing a signed module.
    """

    hash_algorithm: str = "sha512"
    replace: bool = False

    hash_label: ClassVar[str] = "module signature hash"
    hash_choices: ClassVar[str] = "sha512, sha384 or sha256"
    missing_certificate: ClassVar[str] = (
        "module signing needs the signer's certificate (its issuer and serial name the key)"
    )
    certificate_hint: ClassVar[str] = "give --certificate kmod.crt"


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Write ``subject`` with a module signature by ``signer`` appended (default ``SUBJECT.signed``)."""
    o: KmodOptions = request.options
    cert, hash_name = o.signer_certificate(), o.hash_name
    data = read_input(subject, MAX_MODULE_BYTES, what="a kernel module")
    if split(data, source=str(subject)) is not None:
        if not o.replace:
            raise UsageError(
                f"{subject} is already signed", subject=str(subject), hint="give --replace to strip it and sign again"
            )
        data = bytearray(strip(data, source=str(subject)))
    digest = hashlib.new(hash_name, data).digest()
    if request.progress:
        request.progress(len(data))
    sd = _cms.build_signed_data(
        signer, cert, content_digest=digest, hash_name=hash_name, certificates=[], digest_null_parameters=False
    )
    out = request.target(default_output(subject))
    atomic_write_bytes(out, signed_module(data, _cms.content_info(sd)), mode=0o644)
    return out


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Judge the module signature of ``subject`` against the trust set's PKIX keys."""
    if request.signature is not None:
        raise UsageError("a module signature is appended to the module; there is no detached signature file")
    data = read_input(subject, MAX_MODULE_BYTES, what="a kernel module")
    found = split(data, source=str(subject))
    if found is None:
        return request.result(subject)
    return request.result(subject, _check(data, found, request.trust, request.now, request.progress))


_NAME_KEYS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _name_attributes(der: bytes) -> list[tuple[str, str]]:
    """The attributes of a DER Name in encoded order, as (short name or OID, text); unreadable values as hex."""
    out: list[tuple[str, str]] = []
    for rdn in _cms.read_der(der, what="Name").expect(0x30, "Name").children(64):
        for atv in rdn.expect(0x31, "RelativeDistinguishedName").children(16):
            fields = atv.expect(0x30, "AttributeTypeAndValue").children(2)
            if len(fields) != 2:
                raise MalformedError(f"bad name attribute at offset {atv.offset}")
            key = _cms.decode_oid(fields[0])
            codec = _STRING_TAGS.get(fields[1].tag)
            try:
                text = fields[1].content.decode(codec) if codec else "#" + fields[1].der.hex()
            except UnicodeDecodeError:
                text = "#" + fields[1].der.hex()
            out.append((_NAME_KEYS.get(key, key), text))
    return out


def _name_text(der: bytes) -> str:
    """A DER Name as RFC 4514 text (last attribute first, as ``cryptography`` writes it)."""
    return ",".join(f"{k}={v}" for k, v in reversed(_name_attributes(der)))


def _signer_claims(si: _cms.SignerInfo) -> dict[str, Any]:
    claims: dict[str, Any] = {"hash": si.hash_name, "id_type": "PKCS#7"}
    if si.issuer is not None:
        attrs = _name_attributes(si.issuer)
        cn = [v for k, v in attrs if k == "CN"]
        claims["signer"] = cn[-1] if cn else _name_text(si.issuer)
        claims["issuer"] = _name_text(si.issuer)
    if si.serial is not None:
        claims["serial"] = f"{si.serial:x}"
    if si.subject_key_id is not None:
        claims["subject_key_id"] = si.subject_key_id.hex()
    return claims


def _check(
    data: bytes | bytearray, found: SplitModule, trust: TrustSet, now: datetime, progress: Progress | None
) -> SignatureCheck:
    where = f"module signature at offset {found.sig_offset}"
    try:
        sd = _cms.parse_content_info(found.signature, what=where)
        if sd.content_type != _cms.OID_DATA or sd.content is not None:
            raise MalformedError(f"{where} is not a detached signature of data")
        if len(sd.signers) != 1:
            raise MalformedError(f"{where} has {len(sd.signers)} signers; the kernel takes one")
        si = sd.signers[0]
        claims = _signer_claims(si)
    except SigneryError as exc:
        return SignatureCheck(NAME, None, exc.reason, detail=exc.message, subject=where)
    digest = hashlib.new(si.hash_name, memoryview(data)[: found.module_len]).digest()
    if progress:
        progress(found.module_len)
    cert = sd.signer_certificate(si)
    candidates: list[tuple[PublicKey, TrustedKey | None]] = []
    if cert is not None:
        claims.update({"subject": cert.subject.rfc4514_string()})
        pub = certificate_key(cert)
        if pub is not None:
            candidates.append((pub, None))
    else:
        candidates.extend((public, known) for known, public in pkix_keys(trust))
    who = claims.get("signer") or si.signer_id

    def result(reason: Reason | None, detail: str, pub: PublicKey | None, entry: TrustedKey | None) -> SignatureCheck:
        return SignatureCheck(
            NAME,
            key_id(pub) if pub is not None else None,
            reason,
            key_name=entry.name if entry else None,
            detail=detail,
            subject=claims.get("subject", who),
            claims=claims,
        )

    for key, holder in candidates:
        try:
            _cms.check_signer(si, key, content_digest=digest, content_type=_cms.OID_DATA)
        except SigneryError as exc:
            if exc.reason is Reason.TAMPERED or cert is not None:
                return result(exc.reason, f"signature by {who}: {exc.message}", key, holder)
            continue
        trusted = holder
        if trusted is None:  # an embedded certificate: is its key trusted?
            trusted = trusted_chain(trust, cert, sd.certificates) if cert is not None else None
            if trusted is None:
                return result(Reason.UNKNOWN_KEY, f"signed by {who}, whose key is not trusted", key, None)
        problem = entry_problem(trusted, now=now, fmt=NAME, claims={})
        if problem is not None:
            return result(problem[0], problem[1], key, trusted)
        return result(None, f"good signature by {who} ({trusted.name})", key, trusted)
    return result(Reason.UNKNOWN_KEY, f"signed by {who} ({si.signer_id}); no trusted key verifies it", None, None)


def _detect(subject: Path, signature: Path | None = None) -> bool:
    """Whether ``subject`` ends with the module-signature marker (28 bytes read)."""
    if signature is not None:
        return False
    try:
        with Path(subject).open("rb") as fh:
            size = fh.seek(0, 2)
            if size < TRAILER_BYTES:
                return False
            fh.seek(size - len(MAGIC))
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _inspect(subject: Path, signature: Path | None) -> dict[str, Any]:
    """What the appended signature says (signer, serial, hash), without judging trust."""
    data = read_input(subject, MAX_MODULE_BYTES, what="a kernel module")
    found = split(data, source=str(subject))
    out: dict[str, Any] = {"format": NAME, "subject": str(subject), "signatures": []}
    if found is None:
        out["module_bytes"] = len(data)
        return out
    out["module_bytes"] = found.module_len
    item: dict[str, Any] = {"format": NAME, "offset": found.sig_offset, "length": len(found.signature)}
    try:
        sd = _cms.parse_content_info(found.signature, what="module signature")
        item["claims"] = _signer_claims(sd.signers[0]) if sd.signers else {}
        item["certificates"] = [c.subject.rfc4514_string() for c in sd.certificates]
    except SigneryError as exc:
        item["error"] = exc.message
    out["signatures"].append(item)
    return out


class KmodFormat(EmbeddedFormat):
    """Appended kernel module signatures (``sign-file``), checked by the kernel against its builtin keys."""

    name = NAME
    summary = "a kernel module signature appended to X.ko (X.ko.signed), as sign-file writes it (needs --certificate)"
    options_type = KmodOptions

    def may_carry(self, subject: Path) -> bool:
        return _detect(Path(subject))

    def default_output(self, subject: Path, options: Options) -> Path:
        return default_output(Path(subject))


FORMAT = KmodFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
