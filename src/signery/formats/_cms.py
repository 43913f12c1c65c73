"""CMS / PKCS#7 SignedData for the boot formats: built through any :class:`~signery.keys.Signer`, parsed strictly.

Authenticode (PE/EFI images), kernel module signatures and UEFI authenticated variables (``.auth``) all carry a
PKCS#7 SignedData, each with its own shape: Authenticode encapsulates an ``SpcIndirectDataContent`` and signs
attributes, ``sign-file`` writes a detached SignedData with neither certificates nor signed attributes, and
``sign-efi-sig-list`` a detached one with the signer certificate but no attributes. ``cryptography``'s PKCS7
builder can make only the last two, and only with the private key in this process, so this module encodes the
DER itself and signs through :meth:`Signer.sign_digest`: the content is hashed here, and a remote or HSM signer
receives only a digest.

Building: :func:`build_signed_data` (a bare SignedData, what ``.auth`` embeds) and :func:`content_info` (wrapped,
what Authenticode and kernel modules carry); :func:`signing_time` and :data:`SMIME_CAPABILITIES` are attributes as
OpenSSL writes them. Reading: :func:`parse_content_info` / :func:`parse_signed_data` into :class:`SignedData`,
:meth:`SignedData.signer_certificate`, and :func:`check_signer` for the cryptographic check of one
:class:`SignerInfo`. The parser takes definite-length DER only, bounds every length by its enclosing value and the
nesting depth by the structure it expects, and raises :class:`~signery.errors.MalformedError` naming the offset.

Supported keys: RSA (PKCS#1 v1.5, as every firmware and kernel verifier expects) and ECDSA. Ed25519 cannot sign a
digest and these formats never sign whole messages, so it is refused.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

from ..errors import MalformedError, Reason, UsageError, VerificationError
from ..keys import HashName, PublicKey, Signer, key_id, verify_signature

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
OID_RSA = "1.2.840.113549.1.1.1"
_HASH_NAMES: tuple[HashName, ...] = ("sha256", "sha384", "sha512")
# NIST's id-sha256/384/512, PKCS#1's sha{256,384,512}WithRSAEncryption and X9.62's ecdsa-with-SHA{256,384,512}
HASH_OIDS: dict[str, HashName] = {f"2.16.840.1.101.3.4.2.{i + 1}": h for i, h in enumerate(_HASH_NAMES)}
OID_OF_HASH: dict[str, str] = {v: k for k, v in HASH_OIDS.items()}
_RSA_WITH: dict[str, HashName] = {f"1.2.840.113549.1.1.{i + 11}": h for i, h in enumerate(_HASH_NAMES)}
_ECDSA_WITH: dict[str, HashName] = {f"1.2.840.10045.4.3.{i + 2}": h for i, h in enumerate(_HASH_NAMES)}
_ECDSA_OID_OF: dict[str, str] = {v: k for k, v in _ECDSA_WITH.items()}
_HASH_CLASSES: dict[str, type[hashes.HashAlgorithm]] = dict(
    zip(_HASH_NAMES, (hashes.SHA256, hashes.SHA384, hashes.SHA512), strict=True)
)
MAX_CERTIFICATES = 16  # a signer certificate and its chain; more is not a signature
MAX_SIGNERS = 16  # each costs a public-key operation
MAX_ATTRIBUTES = 32

Attribute = tuple[str, tuple[bytes, ...]]  # (OID, the DER of each value)


def tlv(tag: int, content: bytes) -> bytes:
    """One DER value: ``tag`` (a single identifier octet), its definite length, ``content``."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    """A DER SET OF: its elements sorted by their encodings (X.690 11.6)."""
    return tlv(0x31, b"".join(sorted(parts)))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


NULL = b"\x05\x00"  # NULL parameters of an AlgorithmIdentifier


def explicit(n: int, content: bytes) -> bytes:
    """``[n]`` constructed (EXPLICIT, or IMPLICIT over a constructed type)."""
    return tlv(0xA0 | n, content)


def algorithm(dotted: str, *, null: bool) -> bytes:
    """An AlgorithmIdentifier, with NULL parameters or none."""
    return seq(oid(dotted), NULL) if null else seq(oid(dotted))


def der_contents(der: bytes) -> bytes:
    """The content octets of one DER value (what PKCS#7 digests of an encapsulated content)."""
    node = _read(der, 0, len(der))
    if node.end != len(der):
        raise MalformedError(f"trailing bytes after the DER value at offset {node.end}")
    return der[node.start : node.end]


def signing_time(when: datetime) -> Attribute:
    """The signingTime attribute as OpenSSL writes it: UTCTime for 1950-2049, GeneralizedTime otherwise."""
    t = when.astimezone(UTC)
    if 1950 <= t.year < 2050:
        value = tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    else:
        value = tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())
    return (OID_SIGNING_TIME, (value,))


# The smimeCapabilities value OpenSSL's PKCS7_sign adds (sbsign writes it): AES-256/192/128-CBC, 3DES, RC2-128/64,
# DES, RC2-40.
SMIME_CAPABILITIES: Attribute = (
    OID_SMIME_CAPABILITIES,
    (
        bytes.fromhex(
            "306a300b060960864801650304012a300b0609608648016503040116300b0609608648016503040102300a06082a864886f70d"
            "0307300e06082a864886f70d030202020080300d06082a864886f70d0302020140300706052b0e030207300d06082a864886f7"
            "0d0302020128"
        ),
    ),
)


def _attribute(a: Attribute) -> bytes:
    return seq(oid(a[0]), set_of(*a[1]))


def hash_bytes(hash_name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name, data).digest()


def build_signed_data(
    signer: Signer,
    certificate: x509.Certificate,
    *,
    content_digest: bytes,
    hash_name: HashName,
    content_type: str = OID_DATA,
    content: bytes | None = None,
    signed_attributes: Sequence[Attribute] | None = None,
    certificates: Sequence[x509.Certificate] | None = None,
    digest_null_parameters: bool = True,
) -> bytes:
    """A DER SignedData (version 1, signer identified by issuer and serial number), signed through ``signer``.

    Args:
        certificate: the signer's certificate; its issuer and serial name the signer, and its public key must be
            the signer's.
        content_digest: ``hash_name`` of the content: of a detached content's bytes, or of the content octets of
            ``content`` (:func:`der_contents`).
        content_type: the encapsulated content type (``data`` unless Authenticode's SpcIndirectDataContent).
        content: the DER of the encapsulated content (PKCS#7's ``[0] EXPLICIT ANY``: an OCTET STRING for data, the
            SEQUENCE for Authenticode); ``None`` for a detached signature.
        signed_attributes: ``None`` for none (the signature is over the content digest, as ``sign-file`` and
            ``sign-efi-sig-list`` write); otherwise contentType and messageDigest are added to these and the
            signature is over the DER SET of all of them.
        certificates: the certificates to embed (``[]`` for none; default the signer's certificate alone).
        digest_null_parameters: write the digest AlgorithmIdentifiers with NULL parameters (OpenSSL's PKCS7 API,
            sbsign) or without (its CMS API, the kernel's ``sign-file``).
    """
    public = signer.public_key()
    if key_id(certificate.public_key()) != key_id(public):  # type: ignore[arg-type]
        raise UsageError("the certificate does not hold the signer's public key", subject="certificate")
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise UsageError("PKCS#7 signatures here need an RSA or ECDSA key (Ed25519 cannot sign a digest)")
    if hash_name not in OID_OF_HASH:
        raise UsageError(f"unsupported hash {hash_name!r}; use sha256, sha384 or sha512", subject=hash_name)
    if len(content_digest) != hashlib.new(hash_name).digest_size:
        raise UsageError(f"a {hash_name} digest is {hashlib.new(hash_name).digest_size} bytes")
    digest_alg = algorithm(OID_OF_HASH[hash_name], null=digest_null_parameters)
    attrs_field = b""
    to_sign = content_digest
    if signed_attributes is not None:
        attrs = [
            _attribute((OID_CONTENT_TYPE, (oid(content_type),))),
            _attribute((OID_MESSAGE_DIGEST, (octets(content_digest),))),
            *(_attribute(a) for a in signed_attributes),
        ]
        attrs_set = set_of(*attrs)
        attrs_field = b"\xa0" + attrs_set[1:]  # [0] IMPLICIT SET OF Attribute
        to_sign = hash_bytes(hash_name, attrs_set)
    signature = signer.sign_digest(to_sign, hash_name=hash_name, rsa_padding="pkcs1v15")
    if isinstance(public, rsa.RSAPublicKey):
        sig_alg = algorithm(OID_RSA, null=True)
    else:
        sig_alg = algorithm(_ECDSA_OID_OF[hash_name], null=False)
    issuer_serial = seq(certificate.issuer.public_bytes(), integer(certificate.serial_number))
    signer_info = seq(integer(1), issuer_serial, digest_alg, attrs_field, sig_alg, octets(signature))
    encap = seq(oid(content_type), explicit(0, content) if content is not None else b"")
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = [certificate] if certificates is None else list(certificates)
    certs_field = explicit(0, b"".join(c.public_bytes(Encoding.DER) for c in certs)) if certs else b""
    return seq(integer(1), set_of(digest_alg), encap, certs_field, set_of(signer_info))


def content_info(signed_data: bytes) -> bytes:
    """``ContentInfo { signedData, [0] EXPLICIT signed_data }``."""
    return seq(oid(OID_SIGNED_DATA), explicit(0, signed_data))


# -- DER decoding -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One DER value of ``buf``: identifier ``tag``, header at ``offset``, content ``buf[start:end]``."""

    buf: bytes
    tag: int
    offset: int
    start: int
    end: int

    @property
    def content(self) -> bytes:
        return self.buf[self.start : self.end]

    @property
    def der(self) -> bytes:
        return self.buf[self.offset : self.end]

    def children(self, limit: int = 4096) -> list[Node]:
        if not self.tag & 0x20:
            raise MalformedError(f"DER value at offset {self.offset} is not constructed")
        out: list[Node] = []
        pos = self.start
        while pos < self.end:
            if len(out) >= limit:
                raise MalformedError(f"DER value at offset {self.offset} holds more than {limit} elements")
            node = _read(self.buf, pos, self.end)
            out.append(node)
            pos = node.end
        return out

    def expect(self, tag: int, what: str) -> Node:
        if self.tag != tag:
            raise MalformedError(f"{what} at offset {self.offset}: expected tag 0x{tag:02x}, found 0x{self.tag:02x}")
        return self


def _read(buf: bytes, pos: int, end: int) -> Node:
    """The DER value at ``buf[pos:]`` which must end by ``end``; definite lengths of at most 4 octets only."""
    if pos + 2 > end:
        raise MalformedError(f"truncated DER value at offset {pos}")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise MalformedError(f"DER value at offset {pos} uses a high tag number")
    if first < 0x80:
        start, length = pos + 2, first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise MalformedError(f"DER value at offset {pos} has an indefinite or oversized length")
        if pos + 2 + n > end:
            raise MalformedError(f"truncated DER length at offset {pos}")
        length = int.from_bytes(buf[pos + 2 : pos + 2 + n], "big")
        if length < 0x80 or length >> (8 * (n - 1)) == 0:
            raise MalformedError(f"DER value at offset {pos} has a non-minimal length")
        start = pos + 2 + n
    if start + length > end:
        raise MalformedError(f"DER value at offset {pos} runs {start + length - end} bytes past its container")
    return Node(buf, tag, pos, start, start + length)


def read_der(buf: bytes, *, what: str, allow_trailing: bool = False) -> Node:
    """The one DER value ``buf`` holds (zero padding after it allowed with ``allow_trailing``)."""
    node = _read(buf, 0, len(buf))
    if node.end != len(buf) and not (allow_trailing and not buf[node.end :].strip(b"\x00")):
        raise MalformedError(f"{what}: {len(buf) - node.end} bytes after the DER value at offset {node.end}")
    return node


def decode_oid(node: Node) -> str:
    node.expect(0x06, "OBJECT IDENTIFIER")
    body = node.content
    if not body or body[-1] & 0x80 or len(body) > 64:
        raise MalformedError(f"bad OBJECT IDENTIFIER at offset {node.offset}")
    arcs: list[int] = []
    value = 0
    for b in body:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_integer(node: Node) -> int:
    node.expect(0x02, "INTEGER")
    if not node.content or len(node.content) > 64:
        raise MalformedError(f"bad INTEGER at offset {node.offset}")
    return int.from_bytes(node.content, "big", signed=True)


def decode_algorithm(node: Node) -> str:
    parts = node.expect(0x30, "AlgorithmIdentifier").children(2)
    if not parts:
        raise MalformedError(f"empty AlgorithmIdentifier at offset {node.offset}")
    return decode_oid(parts[0])


@dataclass(frozen=True)
class SignerInfo:
    """One signer of a :class:`SignedData`."""

    issuer: bytes | None  # DER Name (issuerAndSerialNumber), or None with a subjectKeyIdentifier
    serial: int | None
    subject_key_id: bytes | None
    hash_name: HashName
    signed_attrs: bytes | None  # DER, re-tagged as the SET it is signed as
    attributes: dict[str, tuple[bytes, ...]]  # signed attributes by OID: the DER of each value
    signature_algorithm: str
    signature: bytes
    offset: int

    @property
    def signer_id(self) -> str:
        if self.serial is not None:
            return f"serial {self.serial:x}"
        return f"key identifier {(self.subject_key_id or b'').hex()}"


@dataclass(frozen=True)
class SignedData:
    content_type: str
    content: Node | None  # the encapsulated content value (inside [0]), if any
    certificates: tuple[x509.Certificate, ...]
    signers: tuple[SignerInfo, ...]

    def signer_certificate(self, si: SignerInfo) -> x509.Certificate | None:
        """The embedded certificate ``si`` names (by issuer and serial, or subject key identifier)."""
        for cert in self.certificates:
            if si.serial is not None and cert.serial_number == si.serial and cert.issuer.public_bytes() == si.issuer:
                return cert
            if si.subject_key_id is not None:
                try:
                    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
                except (x509.ExtensionNotFound, ValueError):
                    continue
                if ski == si.subject_key_id:
                    return cert
        return None


def readable_certificate(data: bytes, *, pem: bool = False) -> x509.Certificate:
    """A DER (or PEM) certificate with the parts these formats read already parsed: ``cryptography`` parses names
    and extensions lazily, so hostile bytes would otherwise fail far from here. Raises ``ValueError``, also for a
    serial number that is not positive (RFC 5280 forbids it, and ``cryptography`` will refuse it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
            cert.serial_number  # noqa: B018 - parsing it is the point
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            cert.issuer.public_bytes()
            _ = cert.extensions
        except ValueError:
            raise
        except Exception as exc:  # InvalidVersion, DuplicateExtension, the deprecation warning: all unreadable
            raise ValueError(str(exc)) from None
    return cert


def parse_content_info(der: bytes, *, what: str, allow_trailing: bool = False) -> SignedData:
    """A ContentInfo holding a SignedData (Authenticode, kernel modules)."""
    top = read_der(der, what=what, allow_trailing=allow_trailing).expect(0x30, "ContentInfo").children(2)
    if len(top) != 2 or decode_oid(top[0]) != OID_SIGNED_DATA:
        raise MalformedError(f"{what} is not a PKCS#7 SignedData")
    inner = top[1].expect(0xA0, "ContentInfo content").children(1)
    if len(inner) != 1:
        raise MalformedError(f"{what}: empty ContentInfo content")
    return _signed_data(inner[0], what)


def parse_signed_data(der: bytes, *, what: str) -> SignedData:
    """A bare SignedData (UEFI authenticated variables)."""
    return _signed_data(read_der(der, what=what), what)


def _signed_data(node: Node, what: str) -> SignedData:
    parts = node.expect(0x30, "SignedData").children(6)
    if len(parts) < 4:
        raise MalformedError(f"{what}: SignedData at offset {node.offset} has {len(parts)} fields")
    decode_integer(parts[0])
    parts[1].expect(0x31, "digestAlgorithms")
    encap = parts[2].expect(0x30, "EncapsulatedContentInfo").children(2)
    if not encap:
        raise MalformedError(f"{what}: empty EncapsulatedContentInfo at offset {parts[2].offset}")
    content_type = decode_oid(encap[0])
    content: Node | None = None
    if len(encap) == 2:
        inner = encap[1].expect(0xA0, "eContent").children(1)
        if len(inner) != 1:
            raise MalformedError(f"{what}: bad eContent at offset {encap[1].offset}")
        content = inner[0]
    certs: list[x509.Certificate] = []
    rest = parts[3:]
    if rest and rest[0].tag == 0xA0:
        for c in rest[0].children(MAX_CERTIFICATES):
            if c.tag != 0x30:
                continue  # an attribute certificate or another choice: not a signer certificate
            try:
                certs.append(readable_certificate(c.der))
            except ValueError:
                raise MalformedError(f"{what}: unreadable certificate at offset {c.offset}") from None
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:
        rest = rest[1:]  # CRLs: not used by these formats
    if len(rest) != 1:
        raise MalformedError(f"{what}: unexpected fields after the certificates of SignedData")
    signers = tuple(_signer_info(s, what) for s in rest[0].expect(0x31, "signerInfos").children(MAX_SIGNERS))
    return SignedData(content_type, content, tuple(certs), signers)


def _signer_info(node: Node, what: str) -> SignerInfo:
    parts = node.expect(0x30, "SignerInfo").children(7)
    if len(parts) < 5:
        raise MalformedError(f"{what}: SignerInfo at offset {node.offset} has {len(parts)} fields")
    decode_integer(parts[0])
    issuer: bytes | None = None
    serial: int | None = None
    ski: bytes | None = None
    if parts[1].tag == 0x30:
        ias = parts[1].children(2)
        if len(ias) != 2:
            raise MalformedError(f"{what}: bad IssuerAndSerialNumber at offset {parts[1].offset}")
        issuer, serial = ias[0].expect(0x30, "issuer").der, decode_integer(ias[1])
    elif parts[1].tag == 0x80:
        ski = parts[1].content
    else:
        raise MalformedError(f"{what}: bad signer identifier at offset {parts[1].offset}")
    digest_oid = decode_algorithm(parts[2])
    if digest_oid not in HASH_OIDS:
        raise VerificationError(
            f"{what}: signer at offset {node.offset} uses digest {digest_oid}, which is refused (need SHA-256+)",
            reason=Reason.BAD_SIGNATURE,
        )
    idx = 3
    signed_attrs: bytes | None = None
    attributes: dict[str, tuple[bytes, ...]] = {}
    if parts[idx].tag == 0xA0:
        signed_attrs = b"\x31" + parts[idx].der[1:]
        for a in parts[idx].children(MAX_ATTRIBUTES):
            fields = a.expect(0x30, "Attribute").children(2)
            if len(fields) != 2:
                raise MalformedError(f"{what}: bad attribute at offset {a.offset}")
            a_oid = decode_oid(fields[0])
            if a_oid in attributes:
                raise MalformedError(f"{what}: attribute {a_oid} appears twice (offset {a.offset})")
            attributes[a_oid] = tuple(v.der for v in fields[1].expect(0x31, "attribute values").children(16))
        idx += 1
    if len(parts) < idx + 2:
        raise MalformedError(f"{what}: SignerInfo at offset {node.offset} is truncated")
    sig_alg = decode_algorithm(parts[idx])
    signature = parts[idx + 1].expect(0x04, "signature").content
    return SignerInfo(
        issuer, serial, ski, HASH_OIDS[digest_oid], signed_attrs, attributes, sig_alg, signature, node.offset
    )


# -- checking -----------------------------------------------------------------------------------------------------


def check_signer(si: SignerInfo, public_key: PublicKey, *, content_digest: bytes, content_type: str) -> None:
    """Check ``si`` by ``public_key`` over content whose ``si.hash_name`` digest is ``content_digest``; raise
    ``tampered`` when the signature holds over another digest (a signed messageDigest, or what an RSA signature
    without attributes recovers to), else ``bad-signature``."""
    _check_algorithm(si, public_key)
    if si.signed_attrs is None:
        try:
            verify_signature(
                public_key, si.signature, content_digest, hash_name=si.hash_name, rsa_padding="pkcs1v15", prehashed=True
            )
        except VerificationError:
            if _rsa_recovers_other(si, public_key, content_digest):
                raise VerificationError(
                    "the signature is intact but was made over other content", reason=Reason.TAMPERED
                ) from None
            raise
        return
    ctype = si.attributes.get(OID_CONTENT_TYPE)
    digest = si.attributes.get(OID_MESSAGE_DIGEST)
    if ctype is None or digest is None or len(ctype) != 1 or len(digest) != 1:
        raise VerificationError(
            "signed attributes lack one contentType and one messageDigest", reason=Reason.BAD_SIGNATURE
        )
    if ctype[0] != oid(content_type):
        raise VerificationError("the signed contentType is not the content's type", reason=Reason.BAD_SIGNATURE)
    verify_signature(
        public_key,
        si.signature,
        hash_bytes(si.hash_name, si.signed_attrs),
        hash_name=si.hash_name,
        rsa_padding="pkcs1v15",
        prehashed=True,
    )
    if digest[0] != octets(content_digest):
        raise VerificationError("the signed messageDigest does not match the content", reason=Reason.TAMPERED)


def _check_algorithm(si: SignerInfo, public_key: PublicKey) -> None:
    alg = si.signature_algorithm
    if isinstance(public_key, rsa.RSAPublicKey):
        if alg == OID_RSA or _RSA_WITH.get(alg) == si.hash_name:
            return
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and _ECDSA_WITH.get(alg) == si.hash_name:
        return
    raise VerificationError(f"signature algorithm {alg} does not fit the key and digest", reason=Reason.BAD_SIGNATURE)


def _rsa_recovers_other(si: SignerInfo, public_key: PublicKey, content_digest: bytes) -> bool:
    """Whether an RSA signature is valid over a digest other than ``content_digest``."""
    if not isinstance(public_key, rsa.RSAPublicKey) or len(si.signature) != (public_key.key_size + 7) // 8:
        return False
    try:
        recovered = public_key.recover_data_from_signature(
            si.signature, padding.PKCS1v15(), _HASH_CLASSES[si.hash_name]()
        )
    except (InvalidSignature, ValueError):
        return False
    return recovered != content_digest


def signing_time_of(si: SignerInfo) -> datetime | None:
    """The signed signingTime, when there is a readable one."""
    values = si.attributes.get(OID_SIGNING_TIME)
    if not values:
        return None
    try:
        node = read_der(values[0], what="signingTime")
        text = node.content.decode("ascii")
        fmt = "%y%m%d%H%M%SZ" if node.tag == 0x17 else "%Y%m%d%H%M%SZ"
        return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    except (MalformedError, ValueError, UnicodeDecodeError):
        return None


__all__ = [
    "HASH_OIDS",
    "NULL",
    "OID_DATA",
    "OID_OF_HASH",
    "OID_SIGNED_DATA",
    "SMIME_CAPABILITIES",
    "Attribute",
    "Node",
    "SignedData",
    "SignerInfo",
    "algorithm",
    "build_signed_data",
    "check_signer",
    "content_info",
    "decode_algorithm",
    "decode_integer",
    "decode_oid",
    "der_contents",
    "explicit",
    "hash_bytes",
    "integer",
    "octets",
    "oid",
    "parse_content_info",
    "parse_signed_data",
    "read_der",
    "readable_certificate",
    "seq",
    "set_of",
    "signing_time",
    "signing_time_of",
    "tlv",
]
