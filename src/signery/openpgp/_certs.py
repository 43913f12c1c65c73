"""Certificates: parse one, keep only what cryptographically valid self-signatures say, and summarize it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..errors import MalformedError
from ._armor import armor, binary
from ._keys import KeyPacket, parse_key_packet
from ._packets import (
    CLOCK_SKEW,
    FLAG_SIGN,
    MAX_KEY_BYTES,
    SIG_CERT_REVOCATION,
    SIG_CERT_TYPES,
    SIG_DIRECT,
    SIG_KEY_REVOCATION,
    SIG_PRIMARY_BINDING,
    SIG_SUBKEY_BINDING,
    SIG_SUBKEY_REVOCATION,
    TAG_MARKER,
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SECRET_KEY,
    TAG_SECRET_SUBKEY,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ATTRIBUTE,
    TAG_USER_ID,
    encode_packet,
    iter_packets,
)
from ._signatures import SignaturePacket, check_signature_value, parse_signature, self_sig_digest, uid_prefix


@dataclass
class Component:
    """A primary key or subkey with what its valid self-signatures say about it."""

    key: KeyPacket
    flags: int | None = None
    key_expires_after: timedelta | None = None
    revoked: bool = False
    bound: bool = False  # a valid binding (subkeys) or self-signature (primary) was found
    secret_body: bytes | None = None  # secret part of a secret-key packet, still encrypted
    binding_time: datetime | None = None

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    @property
    def expires(self) -> datetime | None:
        if self.key_expires_after is None or self.key_expires_after <= timedelta(0):
            return None
        return self.key.created + self.key_expires_after

    @property
    def can_sign(self) -> bool:
        return self.flags is not None and bool(self.flags & FLAG_SIGN) and self.key.public_key is not None


@dataclass
class Certificate:
    """A validated v4 certificate: only cryptographically valid self-signatures are taken into account."""

    primary: Component
    uids: list[str]
    primary_uid: str | None
    subkeys: list[Component]
    public_packets: bytes
    was_secret: bool
    source: str
    components: dict[str, Component] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.primary.fingerprint

    def find(self, issuer: str) -> Component | None:
        """The component whose fingerprint (40 hex) or key id (16 hex) is ``issuer``."""
        issuer = issuer.lower()
        for c in (self.primary, *self.subkeys):
            if c.fingerprint == issuer or c.key.key_id == issuer:
                return c
        return None


def _newest(sigs: list[SignaturePacket]) -> SignaturePacket | None:
    return max(sigs, key=lambda s: s.created or datetime.min.replace(tzinfo=UTC), default=None)


def _valid_self_sig(
    sig: SignaturePacket, signer: KeyPacket, types: tuple[int, ...], now: datetime, *parts: bytes
) -> bool:
    if sig.version != 4 or sig.sig_type not in types or sig.created is None or sig.unknown_critical:
        return False
    if sig.issuer is not None and sig.issuer not in (signer.fingerprint, signer.key_id):
        return False
    if sig.created > now + CLOCK_SKEW or sig.expired_at(now):
        return False
    digest = self_sig_digest(sig, *parts)
    return digest is not None and check_signature_value(signer, sig, digest)


def parse_certificate(data: bytes, *, source: str, now: datetime | None = None) -> Certificate:
    """Parse and validate one OpenPGP certificate or secret key (binary or armored).

    Raises:
        MalformedError: not OpenPGP, not exactly one certificate, a v6 key, or no valid self-signature.
    """
    now = now or datetime.now(UTC)
    if len(data) > MAX_KEY_BYTES:
        raise MalformedError(f"{source} is too large to be an OpenPGP key", subject=source)
    packets = list(iter_packets(binary(data, source=source), source=source))
    packets = [p for p in packets if p.tag not in (TAG_TRUST, TAG_MARKER)]
    if not packets or packets[0].tag not in (TAG_PUBLIC_KEY, TAG_SECRET_KEY):
        raise MalformedError(f"{source} is not an OpenPGP certificate or key", subject=source)
    primaries = sum(1 for p in packets if p.tag in (TAG_PUBLIC_KEY, TAG_SECRET_KEY))
    if primaries > 1:
        raise MalformedError(f"{source} holds {primaries} certificates; give one certificate per file", subject=source)
    was_secret = packets[0].tag == TAG_SECRET_KEY
    pkey, end = parse_key_packet(packets[0].body, source=source)
    primary = Component(pkey, secret_body=packets[0].body[end:] if was_secret else None)
    pprefix = pkey.hash_prefix()

    # Group packets: direct signatures, then (uid, sigs)*, then (subkey, sigs)*.
    direct: list[SignaturePacket] = []
    uid_groups: list[tuple[bytes, list[SignaturePacket]]] = []
    sub_groups: list[tuple[Component, list[SignaturePacket]]] = []
    public_out = bytearray(encode_packet(TAG_PUBLIC_KEY, pkey.public_body))
    current: list[SignaturePacket] | None = direct
    for p in packets[1:]:
        if p.tag == TAG_SIGNATURE:
            public_out += encode_packet(p.tag, p.body)
            if current is not None:
                current.append(parse_signature(p.body, source=source))
        elif p.tag == TAG_USER_ID:
            public_out += encode_packet(p.tag, p.body)
            uid_groups.append((p.body, []))
            current = uid_groups[-1][1]
        elif p.tag in (TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY):
            sk, send = parse_key_packet(p.body, source=source)
            public_out += encode_packet(TAG_PUBLIC_SUBKEY, sk.public_body)
            comp = Component(sk, secret_body=p.body[send:] if p.tag == TAG_SECRET_SUBKEY else None)
            sub_groups.append((comp, []))
            current = sub_groups[-1][1]
        elif p.tag == TAG_USER_ATTRIBUTE:
            current = None  # photo IDs: kept out of the stored certificate, never needed to verify
        else:
            raise MalformedError(f"{source}: unexpected packet (tag {p.tag}) in a certificate", subject=source)

    # Primary key revocation and direct-key signatures.
    for sig in direct:
        if _valid_self_sig(sig, pkey, (SIG_KEY_REVOCATION,), now, pprefix):
            primary.revoked = True
    direct_ok = [s for s in direct if _valid_self_sig(s, pkey, (SIG_DIRECT,), now, pprefix)]

    uids: list[str] = []
    uid_bindings: list[tuple[str, SignaturePacket]] = []
    for raw_uid, sigs in uid_groups:
        parts = (pprefix, uid_prefix(raw_uid))
        if any(_valid_self_sig(s, pkey, (SIG_CERT_REVOCATION,), now, *parts) for s in sigs):
            continue
        binding = _newest([s for s in sigs if _valid_self_sig(s, pkey, SIG_CERT_TYPES, now, *parts)])
        if binding is None:
            continue
        text = raw_uid.decode("utf-8", errors="replace")
        uids.append(text)
        uid_bindings.append((text, binding))
    primary_binding = None
    if uid_bindings:
        primary_binding = max(
            uid_bindings,
            key=lambda ub: (ub[1].primary_uid, ub[1].created or datetime.min.replace(tzinfo=UTC)),
        )
    self_sig = primary_binding[1] if primary_binding else _newest(direct_ok)
    if self_sig is None:
        raise MalformedError(
            f"{source}: no valid self-signature (SHA-1 or weaker self-signatures are refused)", subject=source
        )
    primary.bound = True
    primary.flags = self_sig.key_flags
    primary.key_expires_after = self_sig.key_expires_after
    newest_direct = _newest(direct_ok)
    if primary.flags is None and newest_direct is not None:
        primary.flags = newest_direct.key_flags
    if primary.key_expires_after is None and newest_direct is not None:
        primary.key_expires_after = newest_direct.key_expires_after

    subkeys: list[Component] = []
    for comp, sigs in sub_groups:
        parts = (pprefix, comp.key.hash_prefix())
        if any(_valid_self_sig(s, pkey, (SIG_SUBKEY_REVOCATION,), now, *parts) for s in sigs):
            comp.revoked = True
        bindings = [s for s in sigs if _valid_self_sig(s, pkey, (SIG_SUBKEY_BINDING,), now, *parts)]
        binding = _newest(bindings)
        if binding is None:
            continue
        comp.bound = True
        comp.flags = binding.key_flags
        comp.key_expires_after = binding.key_expires_after
        comp.binding_time = binding.created
        if comp.flags is not None and comp.flags & FLAG_SIGN:
            # A signing subkey must sign back (0x19), or anyone could bind someone else's key as theirs.
            backs = [parse_signature(e, source=source) for e in binding.embedded]
            if not any(_valid_self_sig(b, comp.key, (SIG_PRIMARY_BINDING,), now, *parts) for b in backs):
                comp.flags &= ~FLAG_SIGN
        subkeys.append(comp)

    cert = Certificate(
        primary=primary,
        uids=uids,
        primary_uid=primary_binding[0] if primary_binding else None,
        subkeys=subkeys,
        public_packets=bytes(public_out),
        was_secret=was_secret,
        source=source,
    )
    return cert


def _uid_name(uid: str | None) -> str | None:
    if not uid:
        return None
    name = re.sub(r"\s*<[^>]*>\s*$", "", uid)
    name = re.sub(r"\s*\([^)]*\)\s*$", "", name).strip()
    return name or None


@dataclass(frozen=True)
class CertificateInfo:
    """What the trust store records about an OpenPGP certificate."""

    fingerprint: str
    uids: list[str]
    primary_name: str | None
    expires: datetime | None
    revoked: bool
    signing_subkeys: list[str]
    public_armored: str
    was_secret: bool


def inspect_certificate(data: bytes, *, source: str) -> CertificateInfo:
    """Read one OpenPGP certificate (or secret key, of which only the public part is kept).

    Raises:
        MalformedError: not OpenPGP, several certificates, or no valid self-signature.
    """
    cert = parse_certificate(data, source=source)
    return CertificateInfo(
        fingerprint=cert.fingerprint,
        uids=list(cert.uids),
        primary_name=_uid_name(cert.primary_uid),
        expires=cert.primary.expires,
        revoked=cert.primary.revoked,
        signing_subkeys=[c.fingerprint for c in cert.subkeys if c.can_sign],
        public_armored=armor(cert.public_packets, "PUBLIC KEY BLOCK"),
        was_secret=cert.was_secret,
    )
