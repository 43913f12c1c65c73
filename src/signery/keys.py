"""Key generation, loading and saving, key ids, and the :class:`Signer` protocol.

Every signature format signs through a :class:`Signer`, so a key on disk (:class:`FileSigner`), a key held by the
signing service, and a key in an HSM are interchangeable. Large data is hashed where it lives: formats that sign
big messages call :meth:`Signer.sign_digest`; only digests or small statements ever reach a remote signer.

Example::

    key = generate_private_key("ed25519")
    save_private_key(Path("alice.private.pem"), key)
    signer = FileSigner(key)
    signature = signer.sign(b"message")
    verify_signature(signer.public_key(), signature, b"message")

Post-quantum keys are ML-DSA-65 (FIPS 204), which, like Ed25519, signs whole messages (with the empty context
string). A :class:`HybridSigner` bundles an Ed25519 key and an ML-DSA-65 key: the native format puts both of its
signatures, over the same bytes, in one DSSE envelope; the bundle is one PEM file holding both keys (see
:func:`save_hybrid_key_pair`).
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args, runtime_checkable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

# cryptography's serialization module is imported where it is used: importing it costs more than verifying a
# small plugin (it pulls in SSH keys and every cipher), and the common case, an Ed25519 key, never needs it
# (see _ED25519_SPKI). RSA padding and prehashing likewise.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import padding, utils
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ._fs import atomic_write_bytes
from ._internal.files import read_bounded
from .errors import EnvironmentFailure, MalformedError, Reason, UsageError, VerificationError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | mldsa.MLDSA65PrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey | mldsa.MLDSA65PublicKey
_PRIVATE_TYPES = (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, mldsa.MLDSA65PrivateKey)
_PUBLIC_TYPES = (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey, mldsa.MLDSA65PublicKey)

Algorithm = Literal["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ml-dsa-65"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
HashName = Literal["sha256", "sha384", "sha512"]
RsaPadding = Literal["pss", "pkcs1v15", "pkcs1v15-none"]
"""RSA paddings: PSS, PKCS#1 v1.5 with a DigestInfo, and PKCS#1 v1.5 over the bare digest (``pkcs1v15-none``: what
``openssl pkeyutl -sign`` makes and balena's flasher checks; digests only, see :meth:`Signer.sign_digest`)."""

RAW_PKCS1: RsaPadding = "pkcs1v15-none"
MIN_RSA_BITS = 2048  # below this RSA is factorable by well-funded attackers; NIST disallowed it after 2013
MAX_KEY_FILE_BYTES = 1 << 20  # a PEM key is a few KiB; refuse to parse anything huge
SHORT_ID_LEN = 16

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign: a key file, a remote signing service key, a PKCS#11 key.

    ``sign`` signs a (small) message; ``sign_digest`` signs a digest computed elsewhere (not possible for
    Ed25519 and ML-DSA-65, which sign messages only). RSA keys take ``rsa_padding``; EC keys use ``hash_name``
    for ECDSA.

    Every format signs through this one protocol. OpenPGP needs one more thing, the key's OpenPGP identity (its
    fingerprint covers the key's creation time): :func:`signery.openpgp.bind_signer` binds a signer to its
    certificate or creation time, and OpenPGP then asks for PKCS#1 v1.5 (RSA), ``sign(digest)`` (Ed25519) or
    ``sign_digest`` (ECDSA).
    """

    @property
    def key_id(self) -> str: ...

    def public_key(self) -> PublicKey: ...

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes: ...

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes: ...


@runtime_checkable
class OpenPGPBindable(Protocol):
    """A signer that knows its own OpenPGP identity without being told (a signing service's OpenPGP key)."""

    def openpgp_signer(self) -> Signer | None:
        """This key bound to its OpenPGP certificate, or ``None`` when it has none."""
        ...


def default_hash(public_key: PublicKey) -> HashName:
    """The hash a key signs with by default: SHA-384 for P-384, SHA-256 for everything else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size >= 384:
        return "sha384"
    return "sha256"


def algorithm_name(public_key: PublicKey) -> str:
    """A short name for the key type: ``ed25519``, ``ecdsa-p256``, ``rsa-4096``, ``ml-dsa-65``..."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, mldsa.MLDSA65PublicKey):
        return "ml-dsa-65"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ecdsa-p{public_key.curve.key_size}"
    return f"rsa-{public_key.key_size}"


def _hash(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]()
    except KeyError:
        raise UsageError(f"unsupported hash algorithm {name!r}", subject=name) from None


def _rsa_pad(rsa_padding: RsaPadding, hash_alg: hashes.HashAlgorithm, *, verifying: bool) -> padding.AsymmetricPadding:
    from cryptography.hazmat.primitives.asymmetric import padding

    if rsa_padding == "pkcs1v15":
        return padding.PKCS1v15()
    if rsa_padding == "pss":
        # Sign with salt = digest length (RFC 8017's recommendation, what securesystemslib and OCM use);
        # accept any salt length when verifying, as OpenSSL and Go do, for interoperability.
        salt = padding.PSS.AUTO if verifying else padding.PSS.DIGEST_LENGTH
        return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=salt)
    raise UsageError(f"unsupported RSA padding {rsa_padding!r}")


# RFC 8410: the DER SubjectPublicKeyInfo of an Ed25519 key is these 12 bytes followed by the 32-byte key.
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_PEM_PUBLIC = (b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----")


def spki_der(public_key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``public_key``."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return _ED25519_SPKI + public_key.public_bytes_raw()
    from cryptography.hazmat.primitives import serialization  # see the note at the imports

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ... and an unencrypted Ed25519 PKCS#8 PrivateKeyInfo is these 16 bytes followed by the 32-byte seed.
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
_PEM_PRIVATE = (b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----")


def _ed25519_raw(pem: bytes, armor: tuple[bytes, bytes], prefix: bytes) -> bytes | None:
    """The 32 key bytes of a plain one-block PEM whose DER is ``prefix`` + 32 bytes; ``None`` for anything else
    (which the full parser then judges)."""
    lines = [line.strip() for line in pem.splitlines()]
    if len(lines) < 3 or (lines[0], lines[-1]) != armor or not all(lines[1:-1]):
        return None  # a blank line inside the block is for the full parser to judge (OpenSSL refuses it)
    try:
        der = binascii.a2b_base64(b"".join(lines[1:-1]), strict_mode=True)
    except binascii.Error:
        return None
    if len(der) != len(prefix) + 32 or not der.startswith(prefix):
        return None
    return der[len(prefix) :]


def key_id(public_key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def short_id(kid: str) -> str:
    """The short form of a key id shown to people."""
    return kid[:SHORT_ID_LEN]


class _PublicHalf:
    """The part of a :class:`Signer` over one public key known when it is made: its key id and that key."""

    def __init__(self, public: PublicKey) -> None:
        self._public = public
        self._key_id = key_id(public)

    @property
    def key_id(self) -> str:
        return self._key_id

    def public_key(self) -> PublicKey:
        return self._public


class FileSigner(_PublicHalf):
    """A :class:`Signer` over a private key held in this process (typically loaded from a file)."""

    def __init__(self, private_key: PrivateKeyTypes, *, name: str | None = None) -> None:
        if not isinstance(private_key, _PRIVATE_TYPES):
            raise UsageError(f"unsupported private key type {type(private_key).__name__}")
        _check_strength(private_key.public_key(), source=name or "private key")
        self._key: PrivateKey = private_key
        super().__init__(private_key.public_key())
        self.name = name

    def __repr__(self) -> str:  # never show key material
        return f"FileSigner(key_id={short_id(self._key_id)!r}, algorithm={algorithm_name(self._public)!r})"

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        if isinstance(key, mldsa.MLDSA65PrivateKey):
            return key.sign(message)  # pure ML-DSA (FIPS 204 section 5.2) with the empty context string
        h = _hash(hash_name or default_hash(self._public))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(message, ec.ECDSA(h))
        return key.sign(message, _rsa_pad(rsa_padding, h, verifying=False), h)

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raise UsageError("Ed25519 signs whole messages, not digests; use an RSA or ECDSA key for this format")
        if isinstance(key, mldsa.MLDSA65PrivateKey):
            raise UsageError(
                "ML-DSA-65 signs whole messages, not digests (signery signs no HashML-DSA); use an RSA or ECDSA key "
                "for this format"
            )
        h = _hash(hash_name)
        if len(digest) != h.digest_size:
            raise UsageError(f"a {hash_name} digest is {h.digest_size} bytes, got {len(digest)}")
        from cryptography.hazmat.primitives.asymmetric import utils

        if rsa_padding == RAW_PKCS1:
            if not isinstance(key, rsa.RSAPrivateKey):
                raise UsageError(f"{RAW_PKCS1} is an RSA padding; this key is {algorithm_name(key.public_key())}")
            # OpenSSL's own blinded, constant-time RSA with no digest set, as `openssl pkeyutl -sign` does.
            return key.sign(digest, _rsa_pad("pkcs1v15", h, verifying=False), utils.NoDigestInfo())
        pre = utils.Prehashed(h)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(digest, ec.ECDSA(pre))
        return key.sign(digest, _rsa_pad(rsa_padding, h, verifying=False), pre)


def verify_signature(
    public_key: PublicKey,
    signature: bytes,
    message: bytes,
    *,
    hash_name: HashName | None = None,
    rsa_padding: RsaPadding = "pss",
    prehashed: bool = False,
) -> None:
    """Check ``signature`` over ``message`` (or over a digest when ``prehashed``); raise ``bad-signature`` if not."""
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            if prehashed:
                raise UsageError("Ed25519 cannot verify a prehashed digest")
            public_key.verify(signature, message)
            return
        if isinstance(public_key, mldsa.MLDSA65PublicKey):
            if prehashed:
                raise UsageError("ML-DSA-65 cannot verify a prehashed digest")
            public_key.verify(signature, message)  # the empty context string, as FileSigner.sign signs
            return
        from cryptography.hazmat.primitives.asymmetric import utils

        h = _hash(hash_name or default_hash(public_key))
        if rsa_padding == RAW_PKCS1:
            if not prehashed or not isinstance(public_key, rsa.RSAPublicKey):
                raise UsageError(f"{RAW_PKCS1} verifies RSA signatures of digests only")
            pad = _rsa_pad("pkcs1v15", h, verifying=True)
            public_key.verify(signature, message, pad, utils.NoDigestInfo())  # type: ignore[arg-type]  # since 47
            return
        alg: hashes.HashAlgorithm | utils.Prehashed = utils.Prehashed(h) if prehashed else h
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(alg))
        else:
            public_key.verify(signature, message, _rsa_pad(rsa_padding, h, verifying=True), alg)
    except InvalidSignature:
        raise VerificationError(
            "signature does not match", reason=Reason.BAD_SIGNATURE, subject=key_id(public_key)
        ) from None
    except ValueError as exc:  # e.g. a digest of the wrong length
        raise VerificationError(f"signature cannot be checked: {exc}", reason=Reason.BAD_SIGNATURE) from None


def _check_strength(public_key: PublicKeyTypes, *, source: str) -> None:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        raise MalformedError(
            f"{source}: RSA key of {public_key.key_size} bits is too weak (minimum {MIN_RSA_BITS})", subject=source
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise MalformedError(f"{source}: unsupported elliptic curve {public_key.curve.name}", subject=source)


def generate_private_key(algorithm: str = "ed25519") -> PrivateKey:
    """Create a new private key of the named algorithm (one of :data:`ALGORITHMS`)."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm == "ml-dsa-65":
        try:
            return mldsa.MLDSA65PrivateKey.generate()
        except UnsupportedAlgorithm:
            raise EnvironmentFailure(
                "ML-DSA-65 is not available: the OpenSSL behind the cryptography package lacks it", subject=algorithm
            ) from None
    m = re.fullmatch(r"rsa-(2048|3072|4096)", algorithm)
    if m:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(m.group(1)))
    raise UsageError(f"unknown key algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}", subject=algorithm)


def read_key_file(path: Path) -> bytes:
    """A key file's bytes, bounded (a key is a few KiB); missing or unreadable files are usage errors."""
    try:
        return read_bounded(path, MAX_KEY_FILE_BYTES, what="key file")
    except FileNotFoundError:
        raise UsageError(f"key file {path} does not exist", subject=str(path)) from None
    except OSError as exc:
        raise UsageError(f"key file {path} cannot be read: {exc.strerror}", subject=str(path)) from None


def load_private_key(data: bytes, *, passphrase: bytes | None = None, source: str = "private key") -> PrivateKey:
    """Parse a PEM (PKCS#8, PKCS#1 RSA or SEC1 EC) or DER private key.

    Raises:
        MalformedError: not a supported private key, or a wrong/missing passphrase (the message says which).
    """
    # Only PEM tolerates surrounding whitespace: DER is binary and may legitimately end in a "whitespace" byte.
    pem = data.strip()
    _refuse_bundle(pem, source)
    seed = _ed25519_raw(pem, _PEM_PRIVATE, _ED25519_PKCS8)
    if seed is not None and passphrase is None:
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    from cryptography.hazmat.primitives import serialization  # see the note at the imports

    try:
        if pem.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(pem + b"\n", password=passphrase)
        else:
            key = serialization.load_der_private_key(data, password=passphrase)
    except TypeError as exc:
        needs = "is encrypted; give its passphrase" if passphrase is None else "is not encrypted; drop the passphrase"
        raise MalformedError(f"{source} {needs}", subject=source) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        hint = "wrong passphrase, or " if passphrase is not None else ""
        raise MalformedError(
            f"{source} is not a supported private key ({hint}expected PEM PKCS#8, PKCS#1 or SEC1)", subject=source
        ) from exc
    if not isinstance(key, _PRIVATE_TYPES):
        raise MalformedError(f"{source}: unsupported key type {type(key).__name__}", subject=source)
    _check_strength(key.public_key(), source=source)
    return key


def load_public_key(data: bytes, *, source: str = "public key") -> PublicKey:
    """Parse a PEM SubjectPublicKeyInfo or PKCS#1 ``RSA PUBLIC KEY`` (or DER SPKI), tolerating whitespace."""
    pem = data.strip()  # PEM only: DER is binary and must be parsed as given
    _refuse_bundle(pem, source)
    raw = _ed25519_raw(pem, _PEM_PUBLIC, _ED25519_SPKI)
    if raw is not None:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    from cryptography.hazmat.primitives import serialization  # see the note at the imports

    try:
        if pem.startswith(b"-----BEGIN"):
            key: PublicKeyTypes = serialization.load_pem_public_key(pem + b"\n")
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedError(
            f"{source} is not a supported public key (expected PEM SPKI or PKCS#1)", subject=source
        ) from exc
    if not isinstance(key, _PUBLIC_TYPES):
        raise MalformedError(f"{source}: unsupported key type {type(key).__name__}", subject=source)
    _check_strength(key, source=source)
    return key


def load_private_key_file(path: Path, *, passphrase: bytes | None = None) -> PrivateKey:
    return load_private_key(read_key_file(path), passphrase=passphrase, source=str(path))


def load_public_key_file(path: Path) -> PublicKey:
    """Load a public key file; a private key file is accepted too and only its public half is kept."""
    data = read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise MalformedError(f"{path} holds a private key; give the public key", subject=str(path))
    return load_public_key(data, source=str(path))


KeyFormat = Literal["pkcs8", "pkcs1"]


def private_key_pem(key: PrivateKey, *, passphrase: bytes | None = None, fmt: KeyFormat = "pkcs8") -> bytes:
    from cryptography.hazmat.primitives import serialization  # see the note at the imports

    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    if fmt == "pkcs1":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise UsageError("PKCS#1 is an RSA-only key format")
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, enc)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_key_pem(key: PublicKey, *, fmt: KeyFormat = "pkcs8") -> bytes:
    if fmt == "pkcs1":
        if not isinstance(key, rsa.RSAPublicKey):
            raise UsageError("PKCS#1 is an RSA-only key format")
        from cryptography.hazmat.primitives import serialization

        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    if isinstance(key, ed25519.Ed25519PublicKey):  # 60 base64 characters: one line, as OpenSSL writes it
        body = binascii.b2a_base64(spki_der(key), newline=False)
        return b"%s\n%s\n%s\n" % (_PEM_PUBLIC[0], body, _PEM_PUBLIC[1])
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class KeyPairPaths:
    private: Path
    public: Path


def save_key_pair(
    private_path: Path,
    public_path: Path,
    key: PrivateKey,
    *,
    passphrase: bytes | None = None,
    fmt: KeyFormat = "pkcs8",
    overwrite: bool = False,
) -> KeyPairPaths:
    """Write the private key (mode 0600, atomically) and its public key beside it."""
    return _write_key_pair(
        private_path,
        public_path,
        lambda: private_key_pem(key, passphrase=passphrase, fmt=fmt),
        lambda: public_key_pem(key.public_key(), fmt=fmt),
        overwrite=overwrite,
    )


def _write_key_pair(
    private_path: Path,
    public_path: Path,
    private: Callable[[], bytes],
    public: Callable[[], bytes],
    *,
    overwrite: bool,
) -> KeyPairPaths:
    """Write ``private()`` (mode 0600, atomically), then ``public()`` beside it; unless ``overwrite``, neither file
    may exist beforehand (a usage error, before either is made)."""
    if not overwrite:
        for p in (private_path, public_path):
            if Path(p).exists():
                raise UsageError(f"{p} exists; refusing to overwrite a key", subject=str(p), hint="use --force")
    atomic_write_bytes(private_path, private(), mode=0o600, overwrite=overwrite)
    atomic_write_bytes(public_path, public(), mode=0o644, overwrite=overwrite)
    return KeyPairPaths(Path(private_path), Path(public_path))


# -- hybrid bundles: an Ed25519 key and an ML-DSA-65 key signing together ------------------------------------------
#
# A bundle is one signing identity made of two keys: the native format puts a signature by each, over the same
# DSSE PAE, in one envelope, so that a package stays authentic while either algorithm holds. On disk it is one PEM
# file holding two blocks, the Ed25519 key first and the ML-DSA-65 key second: two PKCS#8 ``PRIVATE KEY`` blocks
# (both ``ENCRYPTED PRIVATE KEY`` under one passphrase, or neither) for the private file, two SPKI ``PUBLIC KEY``
# blocks for the public one. Its key id is :func:`hybrid_key_id`; each half keeps its own.

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_BUNDLE_LABELS = (b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY", b"PUBLIC KEY")


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(label, block)`` for each PEM block of ``data``, in order."""
    return [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def is_hybrid_pem(data: bytes) -> bool:
    """Whether ``data`` is a hybrid bundle file: exactly two private-key blocks, or exactly two public-key blocks."""
    if data.count(b"-----BEGIN ") != 2:
        return False
    labels = [label for label, _ in _pem_blocks(data)]
    if len(labels) != 2 or not all(label in _BUNDLE_LABELS for label in labels):
        return False
    return (labels[0] == b"PUBLIC KEY") == (labels[1] == b"PUBLIC KEY")


def _refuse_bundle(pem: bytes, source: str) -> None:
    # cryptography parses the first PEM block and ignores the rest: a bundle read as one key would sign (or be
    # trusted) as its Ed25519 half alone, silently.
    if is_hybrid_pem(pem):
        raise MalformedError(
            f"{source} is a hybrid key bundle (Ed25519 + ML-DSA-65), not a single key",
            subject=source,
            hint="load it with signery.hybrid.load_hybrid_signer / load_hybrid_public_keys",
        )


__all__ = [
    "ALGORITHMS",
    "FileSigner",
    "PrivateKey",
    "PublicKey",
    "Signer",
    "algorithm_name",
    "default_hash",
    "generate_private_key",
    "is_hybrid_pem",
    "key_id",
    "load_private_key",
    "load_private_key_file",
    "load_public_key",
    "load_public_key_file",
    "private_key_pem",
    "public_key_pem",
    "save_key_pair",
    "short_id",
    "verify_signature",
]
