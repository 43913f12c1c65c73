"""OpenPGP keys, certificates and v4 signatures, as gpg and sq write them, signed through any ``keys.Signer``.

This package parses and writes exactly the part of OpenPGP (RFC 4880 / RFC 9580 v4) that detached package
signatures need: ASCII armor, packet framing, v4 public and secret keys (RSA, EdDSA/Ed25519, ECDSA over the NIST
curves), user IDs, self-signatures and subkey bindings (checked cryptographically), passphrase-protected secret
keys as ``gpg --export-secret-keys`` writes them, and v4 signature packets. Everything else is refused with a
:class:`~signery.errors.MalformedError` naming the input.

Signing goes through the one :class:`~signery.keys.Signer` protocol. An OpenPGP signature also needs the key's
OpenPGP identity (fingerprint, creation time, algorithm id), so a plain signer is bound first:
:func:`bind_signer` to a certificate, or to a creation time; :func:`load_signer` reads an OpenPGP secret key and
returns it bound. The result, :class:`OpenPGPSigner`, is itself a ``Signer``.

Why hand-written rather than pysequoia (checked against pysequoia 0.1.35; the tests use it as an oracle):

- *Per-signature verdicts.* ``pysequoia.verify`` returns the valid signatures only. signery reports every
  signature packet with its own reason (``revoked-key``, ``expired-key``, ``unknown-key``, a weak hash named...),
  which needs each check done separately.
- *Component state.* pysequoia's ``Cert`` exposes the primary key's fingerprint, expiry and revocation. Subkeys are
  reachable only as raw packets, whose key flags come from binding signatures that nothing has verified: a subkey
  with a forged binding still reads "signing". Whether a binding, back-signature or revocation is valid stays
  inside Sequoia's policy.
- *Signing.* ``Tsk.signer()`` is opaque: it cannot wrap a ``keys.Signer`` (a key file, the signing service, an
  HSM), and it cannot sign a digest computed elsewhere. ``sign_file`` picks SHA-512 itself, sets the creation time
  itself and reports no progress.
- *Errors.* Failures are ``RuntimeError`` with a message (a wrong passphrase reads "unexpected EOF"), so turning
  them into signery's errors would mean matching text.

Streaming is no longer a reason: ``pysequoia.verify(file=...)`` streams since 0.1.28. The code is tested
differentially against ``gpg``, ``sq`` and ``sqop`` (tests/interop).

Layout: ``_armor`` (armor), ``_packets`` (constants, framing), ``_keys`` (key packets), ``_signatures``
(signature packets), ``_certs`` (certificate validation), ``_secret`` (S2K and secret keys), ``_sign``
(binding, digest choice, :func:`load_signer`), ``_generate`` (certificates and new keys).

Example::

    key = generate_key("Alice <alice@example.org>", algorithm="ed25519")
    signer = load_signer(key.secret_armored.encode(), source="alice.private.asc")
    info = inspect_certificate(key.public_armored.encode(), source="alice.public.asc")
    assert info.fingerprint == signer.fingerprint

    plain = FileSigner(load_private_key_file(Path("release.private.pem")))   # any keys.Signer
    cert = certificate_for(plain, uid="Release <release@example.org>", created=datetime.now(UTC))
    bound = bind_signer(plain, certificate=cert)
"""

from __future__ import annotations

# The API is __all__. The packet-level names imported beside it (marked noqa: F401) stay importable from here for
# existing callers, but are not API: signery's own code imports them from the private modules.
from ._armor import (
    armor,
    dearmor,
    is_armored,  # noqa: F401
)
from ._certs import (
    Certificate,
    CertificateInfo,
    Component,  # noqa: F401
    inspect_certificate,
    parse_certificate,
)
from ._generate import GeneratedKey, certificate_for, certificate_from_private_key, generate_key
from ._keys import KeyPacket, parse_key_packet  # noqa: F401
from ._packets import (  # noqa: F401
    CLOCK_SKEW,
    HASH_IDS,
    KEY_ALGORITHMS,
    PK_NAMES,
    SIG_BINARY,
    SIG_PRIMARY_BINDING,
    SIG_SUBKEY_BINDING,
    SIG_SUBKEY_REVOCATION,
    STRONG_HASHES,
    TAG_MARKER,
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_USER_ID,
    PrivateKey,
    PublicKey,
    encode_packet,
    iter_packets,
    mpi,
    subpacket,
)
from ._sign import OpenPGPSigner, bind_signer, fastest_hash, load_signer, signer_from_private_key
from ._signatures import SignaturePacket, check_signature_value, make_signature, parse_signature  # noqa: F401

__all__ = [
    "KEY_ALGORITHMS",
    "Certificate",
    "CertificateInfo",
    "GeneratedKey",
    "OpenPGPSigner",
    "PrivateKey",
    "PublicKey",
    "armor",
    "bind_signer",
    "certificate_for",
    "certificate_from_private_key",
    "dearmor",
    "fastest_hash",
    "generate_key",
    "inspect_certificate",
    "load_signer",
    "parse_certificate",
    "signer_from_private_key",
]
