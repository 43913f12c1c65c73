"""OpenPGP detached signatures: ``FILE.sig`` (binary, Mattermost) or armored ``FILE.sig`` (Elastic).

Signing and verifying stream the file from the page cache through the hash in 1 MiB reads, so a 1 GiB package
costs a few MiB of memory; only the digest reaches the signer (which may be remote). Signatures are v4, type 0x00
(binary document), with issuer fingerprint and creation time subpackets in the hashed area, exactly what
``gpg --verify`` and ``sq verify`` accept. Verification reports every signature packet in the file on its own.

:func:`sign` takes any :class:`~signery.keys.Signer`. An OpenPGP secret key loaded with
:func:`signery.openpgp.load_signer` (or the signing service's :class:`~signery.remote.RemoteOpenPGPSigner`)
carries its OpenPGP identity; any other signer is bound here to ``certificate=`` or ``created=`` (see
:func:`signery.openpgp.bind_signer`), and without either :func:`sign` raises a usage error saying so.

Example::

    signer = load_signer(Path("alice.private.asc").read_bytes(), source="alice.private.asc")
    sig = sign(Path("plugin-0.1.0.tar.gz"), signer)          # plugin-0.1.0.tar.gz.sig
    sig = sign(Path("plugin-0.1.0.tar.gz"), FileSigner(key), certificate=Path("release.public.asc").read_bytes())
    result = verify(Path("plugin-0.1.0.tar.gz"), trust=trust)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._fs import atomic_write_bytes
from .._internal.files import read_bounded
from ..errors import ConfigError, MalformedError, Reason, SigneryError, UsageError
from ..keys import OpenPGPBindable, Signer
from ..openpgp._armor import armor, dearmor, is_armored
from ..openpgp._certs import Certificate, Component, parse_certificate
from ..openpgp._packets import (
    CLOCK_SKEW,
    HASH_IDS,
    PK_NAMES,
    SIG_BINARY,
    SIGNING_HASHES,
    STRONG_HASHES,
    TAG_MARKER,
    TAG_SIGNATURE,
    iter_packets,
)
from ..openpgp._sign import OpenPGPSigner, bind_signer
from ..openpgp._signatures import SignaturePacket, check_signature_value, make_signature, parse_signature
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustedKey, TrustSet
from ._base import Options, SignatureFileFormat, SignRequest, VerifyRequest, beside, first_beside, sidecar_exists
from ._common import read_head, read_signature_file, reading

NAME = "openpgp"
CHUNK = 1 << 20  # 1 MiB reads: per-call overhead vanishes, and the buffer stays in the CPU cache while hashed
MAX_SIGNATURE_FILE_BYTES = 1 << 20  # a detached signature is ~600 bytes per signer; more is not a signature file
MAX_SIGNATURES = 64  # each one costs a public-key operation; a file with more is an attack, not a release
SUFFIXES = (".sig", ".asc")
MAX_CERTIFICATE_BYTES = 1 << 20


def _hash_file(
    subject: Path, names: set[str], progress: Callable[[int], None] | None = None
) -> dict[str, hashlib._Hash]:
    """Stream ``subject`` once through every hash in ``names``; the file is never read whole.

    Reads go from the page cache into one reused 1 MiB buffer, which stays in the CPU cache while it is hashed.
    Measured on 1 GiB (SHA-256 with SHA-NI, 2-core EPYC), that cost about 7% less CPU than hashing through a
    32 MiB mapping as :func:`signery.digests.hash_file` does (0.74 s against 0.79 s: the copy is cheaper than the
    mapping's page faults and TLB misses), and it keeps the resident memory at one buffer.
    """
    hashers = {n: hashlib.new(n) for n in sorted(names)}
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with reading(subject, directory="; OpenPGP signs one file"), subject.open("rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            chunk = view[:n]
            for h in hashers.values():
                h.update(chunk)
            if progress:
                progress(n)
    return hashers


def _sign(subject: Path, key: Signer, request: SignRequest) -> Path:
    """Write a detached v4 signature of ``subject`` (default ``SUBJECT.sig``; armored with the ``armor`` option).

    ``key`` is bound to its OpenPGP identity already (:meth:`OpenPGPFormat.prepare`: a plain signer is bound to the
    ``certificate`` option, which must hold its public key, or to the key creation time ``created``). The
    ``hash_algorithm`` option is ``sha256``, ``sha384`` or ``sha512``; by default the faster of SHA-256 and SHA-512 on
    this CPU (:func:`signery.openpgp.fastest_hash`, SHA-384 or more for ECDSA P-384 and P-521).
    """
    o: OpenPGPOptions = request.options
    assert isinstance(key, OpenPGPSigner)
    hash_algorithm = o.hash_algorithm or key.default_hash()
    if hash_algorithm not in SIGNING_HASHES:
        raise UsageError(f"unsupported OpenPGP hash {hash_algorithm!r}; use sha256, sha384 or sha512")
    hashed = _hash_file(subject, {hash_algorithm}, request.progress)[hash_algorithm]
    packet = make_signature(key, sig_type=SIG_BINARY, created=request.now or datetime.now(UTC), data_hash=hashed)
    out = request.target(beside(subject, ".sig"))
    data = _armor_signature(packet).encode() if o.armor else packet
    atomic_write_bytes(out, data, mode=0o644)
    return out


def _armor_signature(packet: bytes) -> str:
    return armor(packet, "SIGNATURE")


def find_signature(subject: Path, signature: Path | None = None) -> Path | None:
    """The signature file: ``signature`` if given, else ``SUBJECT.sig`` or ``SUBJECT.asc`` beside it."""
    return Path(signature) if signature is not None else first_beside(subject, SUFFIXES)


def read_signatures(path: Path) -> list[SignaturePacket]:
    """Parse a detached signature file (binary or armored) into its signature packets."""
    source = str(path)
    data = read_signature_file(path, MAX_SIGNATURE_FILE_BYTES)
    if len(data) > MAX_SIGNATURE_FILE_BYTES:
        raise MalformedError(f"{path} is too large to be a detached signature", subject=source)
    if is_armored(data):
        data, kinds = dearmor(data, source=source)
        if any(k != "SIGNATURE" for k in kinds):
            raise MalformedError(f"{path} holds a PGP {kinds[0]}, not a detached signature", subject=source)
    sigs: list[SignaturePacket] = []
    for p in iter_packets(data, source=source, max_packets=MAX_SIGNATURES + 8):
        if p.tag == TAG_MARKER:
            continue
        if p.tag != TAG_SIGNATURE:
            raise MalformedError(
                f"{path} is not a detached signature (it holds an OpenPGP packet of tag {p.tag})", subject=source
            )
        sigs.append(parse_signature(p.body, source=source))
    if not sigs:
        raise MalformedError(f"{path} holds no signature packet", subject=source)
    if len(sigs) > MAX_SIGNATURES:
        raise MalformedError(f"{path} holds more than {MAX_SIGNATURES} signatures", subject=source)
    return sigs


def _trusted_certs(trust: TrustSet, now: datetime) -> list[tuple[TrustedKey, Certificate]]:
    out = []
    for entry in trust.of_kind("openpgp"):
        try:
            cert = parse_certificate(entry.material.encode(), source=f"trust entry {entry.name}", now=now)
        except SigneryError as exc:
            raise ConfigError(
                f"trusted OpenPGP key {entry.name} cannot be read: {exc.message}", subject=entry.key_id
            ) from None
        out.append((entry, cert))
    return out


def _lookup(
    certs: list[tuple[TrustedKey, Certificate]], sig: SignaturePacket
) -> tuple[TrustedKey, Certificate, Component] | None:
    issuer = sig.issuer
    if issuer is None:
        return None
    for entry, cert in certs:
        comp = cert.find(issuer)
        if comp is not None:
            return entry, cert, comp
    return None


def _check_one(
    sig: SignaturePacket,
    digests: dict[str, hashlib._Hash],
    certs: list[tuple[TrustedKey, Certificate]],
    now: datetime,
) -> SignatureCheck:
    def fail(reason: Reason, detail: str, *, key_id: str | None = None, subject: str | None = None) -> SignatureCheck:
        return SignatureCheck(
            NAME,
            key_id or sig.issuer,
            reason,
            detail=detail,
            subject=subject or key_id or sig.issuer,
            signed_at=sig.created,
            claims=_claims(sig),
        )

    if sig.version != 4:
        return fail(Reason.BAD_SIGNATURE, f"OpenPGP v{sig.version} signatures are refused (only v4)")
    if sig.hash_algorithm not in STRONG_HASHES:
        return fail(Reason.BAD_SIGNATURE, f"signature uses {sig.hash_name}, which is refused (need SHA-256 or better)")
    if sig.sig_type != SIG_BINARY:
        return fail(Reason.BAD_SIGNATURE, f"signature type 0x{sig.sig_type:02x} is not a binary-document signature")
    if sig.created is None:
        return fail(Reason.BAD_SIGNATURE, "signature has no creation time")
    if sig.unknown_critical:
        return fail(Reason.BAD_SIGNATURE, f"signature has unknown critical subpackets {list(sig.unknown_critical)}")
    found = _lookup(certs, sig)
    if found is None:
        who = sig.issuer or "an unnamed key"
        return fail(Reason.UNKNOWN_KEY, f"signed by {who}, which is not a trusted OpenPGP key")
    entry, cert, comp = found

    def bad(reason: Reason, detail: str) -> SignatureCheck:
        return SignatureCheck(
            NAME,
            cert.fingerprint,
            reason,
            key_name=entry.name,
            detail=detail,
            subject=comp.fingerprint,
            signed_at=sig.created,
            claims=_claims(sig, comp),
        )

    h = digests[STRONG_HASHES[sig.hash_algorithm]].copy()
    h.update(sig.hashed_prefix)
    h.update(sig.trailer())
    digest = h.digest()
    if not hmac.compare_digest(digest[:2], sig.left16) or not check_signature_value(comp.key, sig, digest):
        return bad(Reason.BAD_SIGNATURE, f"signature by {comp.fingerprint} does not match the file")
    status = entry.status_at(now)
    if status is Reason.REVOKED_KEY or cert.primary.revoked:
        return bad(Reason.REVOKED_KEY, f"key {cert.fingerprint} ({entry.name}) is revoked")
    if comp.revoked:
        return bad(Reason.REVOKED_KEY, f"signing subkey {comp.fingerprint} of {entry.name} is revoked")
    if status is Reason.EXPIRED_KEY:
        return bad(Reason.EXPIRED_KEY, f"trust in key {entry.name} expired on {entry.expires:%Y-%m-%d}")
    for c, what in ((cert.primary, "key"), (comp, "signing subkey")):
        if c.expires is not None and c.expires <= now:
            return bad(Reason.EXPIRED_KEY, f"{what} {c.fingerprint} ({entry.name}) expired on {c.expires:%Y-%m-%d}")
    if comp is not cert.primary and not comp.bound:
        return bad(Reason.BAD_SIGNATURE, f"subkey {comp.fingerprint} has no valid binding to {cert.fingerprint}")
    if not comp.can_sign:
        return bad(Reason.BAD_SIGNATURE, f"key {comp.fingerprint} ({entry.name}) is not allowed to sign data")
    if sig.expired_at(now):
        return bad(Reason.EXPIRED_KEY, "the signature itself has expired")
    if sig.created < comp.key.created:
        return bad(Reason.BAD_SIGNATURE, "signature claims to predate its key")
    if sig.created > now + CLOCK_SKEW:
        return bad(Reason.BAD_SIGNATURE, f"signature is dated in the future ({sig.created:%Y-%m-%d %H:%M} UTC)")
    violation = entry.constraints.violation(fmt=NAME, claims={})
    if violation:
        return bad(Reason.POLICY_VIOLATION, violation)
    return SignatureCheck(
        NAME,
        cert.fingerprint,
        None,
        key_name=entry.name,
        detail=f"good signature by {entry.name}",
        subject=comp.fingerprint,
        signed_at=sig.created,
        claims=_claims(sig, comp),
    )


def _claims(sig: SignaturePacket, comp: Component | None = None) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "hash": HASH_IDS.get(sig.hash_algorithm, str(sig.hash_algorithm)),
        "algorithm": PK_NAMES.get(sig.pk_algorithm, str(sig.pk_algorithm)),
        "issuer": sig.issuer,
    }
    if comp is not None:
        claims["signing_key"] = comp.fingerprint
    return claims


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Check every signature packet in ``signature`` (or ``SUBJECT.sig`` / ``SUBJECT.asc``) against ``trust``.

    Raises ``malformed`` for an unreadable signature file; a missing signature gives an ``unsigned`` result.
    """
    sig_path = find_signature(subject, request.signature)
    if sig_path is None:
        return request.unsigned(subject)
    sigs = read_signatures(sig_path)
    certs = _trusted_certs(request.trust, request.now)
    names = {STRONG_HASHES[s.hash_algorithm] for s in sigs if s.version == 4 and s.hash_algorithm in STRONG_HASHES}
    digests = _hash_file(subject, names, request.progress) if names else {}
    if not names and not subject.is_file():
        raise UsageError(f"{subject} does not exist", subject=str(subject))
    return request.result(subject, *(_check_one(s, digests, certs, request.now) for s in sigs))


def _detect(path: Path) -> bool:
    """Whether the file ``path`` is an OpenPGP detached signature."""
    if not path.is_file():
        return False
    head = read_head(path, 64) or b""
    if head.lstrip().startswith(b"-----BEGIN PGP SIGNATURE"):
        return True
    if not head or not head[0] & 0x80:
        return False
    tag = (head[0] & 0x3F) if head[0] & 0x40 else ((head[0] >> 2) & 0x0F)
    return tag == TAG_SIGNATURE


def _inspect(subject: Path, path: Path) -> dict[str, Any]:
    """What the signatures say (issuer, hash, time), without judging trust."""
    out = []
    for s in read_signatures(path):
        created = s.created.isoformat().replace("+00:00", "Z") if s.created else None
        expires = s.created + s.expires_after if s.created and s.expires_after else None
        out.append(
            {
                "format": NAME,
                "key_id": s.issuer,
                "signed_at": created,
                "issuer_fingerprint": s.issuer_fingerprint,
                "issuer_key_id": s.issuer_key_id,
                "claims": {
                    "version": s.version,
                    "type": f"0x{s.sig_type:02x}" if s.sig_type >= 0 else None,
                    "algorithm": PK_NAMES.get(s.pk_algorithm, str(s.pk_algorithm)),
                    "hash": HASH_IDS.get(s.hash_algorithm, str(s.hash_algorithm)),
                    "expires": expires.isoformat().replace("+00:00", "Z") if expires else None,
                },
            }
        )
    return FORMAT.inspected(subject, out, signature=path)


# -- the Format ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenPGPOptions(Options):
    """Signing options of the OpenPGP format.

    Attributes:
        armor: an ASCII-armored signature (what Kibana reads) instead of a binary one (Mattermost, GRUB).
        hash_algorithm: ``sha256``, ``sha384`` or ``sha512``; default the fastest on this CPU for the key.
        certificate: binds a plain signer (a PEM key) to the OpenPGP certificate holding its public key.
        created: binds a plain signer to the OpenPGP key creation time its fingerprint was made with.
    """

    armor: bool = False
    hash_algorithm: str | None = None
    certificate: bytes | str | Path | None = None
    created: datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.certificate, Path):  # a file named on the command line
            try:
                data = read_bounded(self.certificate, MAX_CERTIFICATE_BYTES, what="OpenPGP certificate")
            except OSError as exc:
                where = str(self.certificate)
                raise UsageError(f"cannot read {where}: {exc.strerror}", subject=where) from None
            object.__setattr__(self, "certificate", data)
        if self.hash_algorithm is not None and self.hash_algorithm not in SIGNING_HASHES:
            raise UsageError(f"unsupported OpenPGP hash {self.hash_algorithm!r}; use sha256, sha384 or sha512")


class OpenPGPFormat(SignatureFileFormat):
    """Detached OpenPGP v4 signatures (``X.sig``), as gpg, Mattermost and Elastic make and check them."""

    name = NAME
    summary = "a detached OpenPGP signature X.sig (armored with --armor), as gpg, Mattermost and Elastic use"
    options_type = OpenPGPOptions
    ed25519_caution = (
        "an EdDSA signature: Mattermost's verifier (Go x/crypto/openpgp) and GRUB cannot read it; "
        "sign with an RSA key for them (signery keygen NAME --format openpgp makes RSA-3072)"
    )

    def signature_file(self, subject: Path, signature: Path | None) -> Path | None:
        return find_signature(subject, signature)

    def may_carry(self, subject: Path) -> bool:
        return sidecar_exists(Path(subject), *SUFFIXES)

    def prepare(self, signer: Signer, options: Options) -> Signer:
        o: OpenPGPOptions = self._options(options)
        if isinstance(signer, OpenPGPSigner):
            return signer
        certificate = o.certificate if not isinstance(o.certificate, Path) else None
        return bind_signer(signer, certificate=certificate, created=o.created, source="the given certificate")

    def detached_beside(self, subject: Path) -> Path | None:
        return find_signature(Path(subject))

    def default_output(self, subject: Path, options: Options) -> Path:
        return beside(subject, ".sig")

    def suits(self, subject: Path, signer: Signer) -> bool:
        if isinstance(signer, OpenPGPSigner):
            return True
        return isinstance(signer, OpenPGPBindable) and signer.openpgp_signer() is not None

    def identity(self, signer: Signer) -> str:
        if isinstance(signer, OpenPGPSigner):
            return signer.fingerprint
        bound = signer.openpgp_signer() if isinstance(signer, OpenPGPBindable) else None
        return bound.fingerprint if isinstance(bound, OpenPGPSigner) else signer.key_id


FORMAT = OpenPGPFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
