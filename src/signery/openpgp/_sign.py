"""OpenPGP signing through any :class:`~signery.keys.Signer`: bind it to an OpenPGP key, choose the digest.

An OpenPGP signature names its key by the v4 fingerprint, which covers the key's creation time, and says which
public-key algorithm made it. A plain :class:`~signery.keys.Signer` (a key file, the signing service, an HSM)
knows neither, so it is *bound* first: to the certificate that holds its public key (the fingerprint and
algorithm are read from it), or to a creation time (the fingerprint is computed, as for a key made for the
signing service). :class:`OpenPGPSigner` is that binding, and is itself a :class:`~signery.keys.Signer`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from datetime import UTC, datetime
from typing import cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils

from ..errors import MalformedError, UsageError
from ..keys import FileSigner, HashName, OpenPGPBindable, RsaPadding, Signer
from ..keys import PublicKey as SignerPublicKey
from ._armor import armor, is_armored
from ._certs import Certificate, Component, parse_certificate
from ._keys import KeyPacket, key_packet, same_key
from ._packets import PK_ECDSA, PK_ED25519, PK_EDDSA, PK_NAMES, PK_RSA, PK_RSA_S, SIGNING_HASHES, PrivateKey
from ._secret import StubKeyError, decrypt_secret, private_key

_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_PROBE_BYTES = 1 << 18  # hashed 3 times by each candidate: about 2 ms in all, once per process
_SHA512_MARGIN = 1.15  # SHA-512 must beat SHA-256 by this much, so timing noise cannot flip a close call


@functools.cache
def fastest_hash() -> HashName:
    """SHA-256 or SHA-512, whichever this CPU hashes faster; measured once per process.

    With SHA extensions (x86 SHA-NI, ARMv8 SHA-2) SHA-256 is about twice as fast as SHA-512; without them, on a
    64-bit CPU, SHA-512 is about 1.5 times as fast as SHA-256. Both are accepted by every OpenPGP verifier.
    """
    buf = bytes(_PROBE_BYTES)
    best = dict.fromkeys(("sha256", "sha512"), math.inf)
    for _ in range(3):
        for name in best:
            t0 = time.perf_counter()
            hashlib.new(name, buf).digest()
            best[name] = min(best[name], time.perf_counter() - t0)
    return "sha512" if best["sha512"] * _SHA512_MARGIN < best["sha256"] else "sha256"


class OpenPGPSigner:
    """A :class:`~signery.keys.Signer` bound to an OpenPGP key; itself a :class:`~signery.keys.Signer`.

    Give exactly one of ``certificate`` (armored or binary; the signer's public key must be its primary key or a
    subkey that may sign now) or ``created`` (the key's creation time, from which the v4 fingerprint follows).
    ``signer`` may already be bound: it is then bound anew.

    Attributes:
        signer: the plain signer that makes the signature values.
        fingerprint: the v4 fingerprint of the signing key (a subkey's, when a subkey signs).
        pubkey_algorithm: the OpenPGP algorithm id written into signatures (1 RSA, 19 ECDSA, 22 EdDSA, 27 Ed25519).
        created: the key's creation time.
        certificate: the armored public certificate, when bound to one.
    """

    def __init__(
        self,
        signer: Signer,
        *,
        certificate: bytes | str | None = None,
        created: datetime | None = None,
        source: str = "certificate",
        now: datetime | None = None,
    ) -> None:
        if isinstance(signer, OpenPGPSigner):
            signer = signer.signer
        if (certificate is None) == (created is None):
            raise UsageError("bind an OpenPGP signer to exactly one of a certificate or a creation time")
        public = signer.public_key()
        if not isinstance(public, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
            raise UsageError(
                f"{type(public).__name__} keys have no OpenPGP v4 form here; sign OpenPGP with RSA, ECDSA or Ed25519",
                subject=signer.key_id,
            )
        if created is not None:
            self._bind(signer, key_packet(public, created), None)
            return
        data = certificate.encode() if isinstance(certificate, str) else certificate
        assert data is not None
        cert = parse_certificate(data, source=source, now=now)
        comp = _signing_component(cert, public, now=now or datetime.now(UTC), source=source)
        self._bind(signer, comp.key, armor(cert.public_packets, "PUBLIC KEY BLOCK"))

    @classmethod
    def _of(cls, signer: Signer, key: KeyPacket, certificate: str | None) -> OpenPGPSigner:
        """Bind to a key packet already checked (by :func:`load_signer`)."""
        self = cls.__new__(cls)
        self._bind(signer, key, certificate)
        return self

    def _bind(self, signer: Signer, key: KeyPacket, certificate: str | None) -> None:
        if key.public_key is None or key.algorithm not in (PK_RSA, PK_RSA_S, PK_EDDSA, PK_ED25519, PK_ECDSA):
            raise UsageError(f"OpenPGP key {key.fingerprint} ({PK_NAMES.get(key.algorithm)}) cannot sign here")
        self.signer = signer
        self.key = key
        self.fingerprint: str = key.fingerprint
        self.pubkey_algorithm: int = key.algorithm
        self.created: datetime = key.created
        self.certificate = certificate

    def __repr__(self) -> str:  # never show key material (the wrapped signer's repr shows none either)
        algorithm = PK_NAMES[self.pubkey_algorithm]
        return f"OpenPGPSigner(fingerprint={self.fingerprint!r}, algorithm={algorithm!r}, signer={self.signer!r})"

    # -- keys.Signer, by delegation ----------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """The wrapped signer's key id (so a bound signer still signs every other format as itself)."""
        return self.signer.key_id

    def public_key(self) -> SignerPublicKey:
        return self.signer.public_key()

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        return self.signer.sign(message, hash_name=hash_name, rsa_padding=rsa_padding)

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        return self.signer.sign_digest(digest, hash_name=hash_name, rsa_padding=rsa_padding)

    # -- OpenPGP -----------------------------------------------------------------------------------------------

    def default_hash(self) -> HashName:
        """:func:`fastest_hash`, raised to SHA-384/SHA-512 for ECDSA keys on the larger curves."""
        fastest = fastest_hash()
        pub = self.key.public_key
        if isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.key_size > 256:
            return "sha512" if fastest == "sha512" or pub.curve.key_size > 384 else "sha384"
        return fastest

    def sign_hash(self, digest: bytes, *, hash_algorithm: str) -> bytes:
        """The raw OpenPGP v4 signature value over ``digest`` (of the data and the signature's trailer).

        RSA: the PKCS#1 v1.5 signature over the prehashed digest. EdDSA and Ed25519: the 64-byte Ed25519
        signature of the digest bytes. ECDSA: ``r || s``, each as wide as the curve.
        """
        if hash_algorithm not in SIGNING_HASHES:
            raise UsageError(f"unsupported OpenPGP hash {hash_algorithm!r}; use sha256, sha384 or sha512")
        name = cast(HashName, hash_algorithm)
        if len(digest) != _DIGEST_SIZES[name]:
            raise UsageError(f"a {name} digest is {_DIGEST_SIZES[name]} bytes, got {len(digest)}")
        if self.pubkey_algorithm in (PK_EDDSA, PK_ED25519):
            return self.signer.sign(digest)
        if self.pubkey_algorithm == PK_ECDSA:
            pub = self.key.public_key
            assert isinstance(pub, ec.EllipticCurvePublicKey)
            r, s = utils.decode_dss_signature(self.signer.sign_digest(digest, hash_name=name))
            size = (pub.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return self.signer.sign_digest(digest, hash_name=name, rsa_padding="pkcs1v15")


def _signing_component(cert: Certificate, public: SignerPublicKey, *, now: datetime, source: str) -> Component:
    """The component of ``cert`` whose key is ``public`` and that may sign now; else a usage error saying why."""
    matches = [c for c in (*cert.subkeys, cert.primary) if c.key.public_key and same_key(c.key.public_key, public)]
    if not matches:
        keys = ", ".join(c.fingerprint for c in (cert.primary, *cert.subkeys))
        raise UsageError(f"{source} does not hold this signer's public key (it holds {keys})", subject=source)
    first_problem: str | None = None
    for comp in sorted(matches, key=lambda c: c.key.created, reverse=True):
        what = "key" if comp is cert.primary else "signing subkey"
        problems: list[str] = []
        for owner, label in ((cert.primary, "key"), (comp, what)):
            if owner.revoked:
                problems.append(f"{label} {owner.fingerprint} is revoked")
            elif owner.expires is not None and owner.expires <= now:
                problems.append(f"{label} {owner.fingerprint} expired on {owner.expires:%Y-%m-%d}")
        if not comp.can_sign:
            problems.append(f"{what} {comp.fingerprint} is not allowed to sign data (no sign flag or binding)")
        if not problems:
            return comp
        first_problem = first_problem or problems[0]
    raise UsageError(f"{source}: this signer's key cannot sign: {first_problem}", subject=source)


def bind_signer(
    signer: Signer,
    *,
    certificate: bytes | str | None = None,
    created: datetime | None = None,
    source: str = "certificate",
    now: datetime | None = None,
) -> OpenPGPSigner:
    """``signer`` as an :class:`OpenPGPSigner`: bound to ``certificate`` or to a creation time ``created``.

    An already bound signer comes back as it is when neither is given. Raises a usage error when neither is given
    for a plain signer, when the certificate does not hold the signer's key or that key may not sign now, and
    for key types OpenPGP cannot carry.
    """
    if certificate is None and created is None:
        if isinstance(signer, OpenPGPSigner):
            return signer
        bound = signer.openpgp_signer() if isinstance(signer, OpenPGPBindable) else None
        if isinstance(bound, OpenPGPSigner):
            return bound
        who = getattr(signer, "name", None) or signer.key_id
        raise UsageError(
            f"{who} is not an OpenPGP key: an OpenPGP signature names its key by a fingerprint that depends on "
            "the key's creation time, which a PEM key does not record",
            subject=str(who),
            hint="sign with an OpenPGP secret key (signery keygen NAME --format openpgp, or gpg --export-secret-keys)"
            ", or give the OpenPGP certificate holding this key (--certificate; certificate= or created= in Python)",
        )
    return OpenPGPSigner(signer, certificate=certificate, created=created, source=source, now=now)


def signer_from_private_key(key: PrivateKey, *, created: datetime) -> OpenPGPSigner:
    """An :class:`OpenPGPSigner` over a plain key, for the certificate built with the same ``created``."""
    return OpenPGPSigner(FileSigner(key), created=created)


def load_signer(data: bytes, *, passphrase: bytes | None = None, source: str) -> OpenPGPSigner:
    """Load a secret key (from ``gpg --export-secret-keys``, ``sq key generate`` or :func:`generate_key`).

    The newest valid signing subkey with secret material signs, as gpg does; else the primary key, if it may
    sign. Raises ``malformed`` for a non-key or a key that cannot sign, and a usage error for a missing or wrong
    passphrase.
    """
    if data.lstrip().startswith(b"-----BEGIN ") and not is_armored(data):
        raise UsageError(
            f"{source} is a PEM key, not an OpenPGP secret key",
            subject=source,
            hint="sign with an OpenPGP key (signery keygen --format openpgp, gpg --export-secret-keys), or in "
            "Python bind keys.FileSigner(...) to its certificate with openpgp.bind_signer",
        )
    cert = parse_certificate(data, source=source)
    if not cert.was_secret:
        raise UsageError(f"{source} is a public certificate; signing needs the secret key", subject=source)
    if cert.primary.revoked:
        raise UsageError(f"{source}: key {cert.fingerprint} is revoked", subject=source)
    now = datetime.now(UTC)
    if cert.primary.expires is not None and cert.primary.expires <= now:
        raise UsageError(f"{source}: key {cert.fingerprint} expired on {cert.primary.expires:%Y-%m-%d}", subject=source)
    candidates = [
        c
        for c in cert.subkeys
        if c.can_sign and c.secret_body and not c.revoked and (c.expires is None or c.expires > now)
    ]
    candidates.sort(key=lambda c: c.key.created, reverse=True)
    if cert.primary.can_sign and cert.primary.secret_body:
        candidates.append(cert.primary)
    if not candidates:
        raise MalformedError(f"{source}: no usable signing key (no secret key with the sign flag)", subject=source)
    stub: StubKeyError | None = None
    for comp in candidates:
        assert comp.secret_body is not None
        try:
            plain = decrypt_secret(comp.secret_body, passphrase, source=source)
        except StubKeyError as exc:  # its secret lives on a card: try the next candidate
            stub = exc
            continue
        signer = FileSigner(private_key(comp.key, plain, source=source), name=source)
        return OpenPGPSigner._of(signer, comp.key, armor(cert.public_packets, "PUBLIC KEY BLOCK"))
    assert stub is not None
    raise stub
