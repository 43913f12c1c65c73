"""Reading a key file to trust: a PEM public key, a private key's public half, an X.509 certificate, an OpenPGP
certificate or a hybrid bundle."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .._internal.files import read_bounded
from ..errors import MalformedError, UsageError
from ..keys import PublicKey, load_public_key
from ._model import MAX_KEY_FILE_BYTES, Constraints, TrustedKey, trusted_key_from_bundle, trusted_key_from_public


def _spki_pem() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo


def _looks_openpgp(data: bytes) -> bool:
    s = data.lstrip()
    if s.startswith(b"-----BEGIN PGP"):
        return True
    # Binary OpenPGP: first octet has bit 7 set; tags 6 (public key) or 5 (secret key), old or new format.
    if s and s[0] & 0x80:
        tag = (s[0] & 0x3F) if s[0] & 0x40 else ((s[0] >> 2) & 0x0F)
        return tag in (5, 6)
    return False


@dataclass(frozen=True)
class LoadedKey:
    """A key file read for the trust store.

    ``dropped_secret`` says a private key was given and only its public half was kept. ``source`` is the file it
    came from; ``name_derived`` says its name came from the file (an OpenPGP UID, a certificate's CN, the file
    name) rather than from the caller; ``expiry_from`` says where its expiry came from (``"option"``: the caller's
    ``expires``; ``"key"``: the certificate's own), or ``None`` when it has none.
    """

    key: TrustedKey
    dropped_secret: bool = False
    source: str | None = None
    name_derived: bool = False
    expiry_from: Literal["option", "key"] | None = None


def load_trusted_key_file(
    path: Path,
    *,
    name: str | None = None,
    expires: datetime | None = None,
    constraints: Constraints | None = None,
    passphrase: bytes | None = None,
) -> LoadedKey:
    """Read a PEM public key, an X.509 certificate or an OpenPGP certificate into a :class:`TrustedKey`.

    A private key (PEM or OpenPGP) is accepted and only its public part is kept; ``dropped_secret`` says so. An
    encrypted PEM private key needs ``passphrase`` to reach its public part (an OpenPGP secret key does not; an
    unencrypted file ignores it). Anything else is a ``malformed`` error naming the file.
    """
    loaded = _load_trusted_key_file(path, name=name, expires=expires, constraints=constraints, passphrase=passphrase)
    key = loaded.key
    expiry_from: Literal["option", "key"] | None = None
    if key.expires is not None:
        expiry_from = "option" if expires is not None and key.expires == expires else "key"
    return replace(loaded, source=str(path), name_derived=name is None, expiry_from=expiry_from)


def _load_trusted_key_file(
    path: Path,
    *,
    name: str | None,
    expires: datetime | None,
    constraints: Constraints | None,
    passphrase: bytes | None,
) -> LoadedKey:
    path = Path(path)
    try:
        data = read_bounded(path, MAX_KEY_FILE_BYTES, what="key file")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", subject=str(path)) from None
    constraints = constraints or Constraints()
    if _looks_openpgp(data):
        # Imported here so that verifying a PEM-signed package never loads the OpenPGP machinery.
        from .. import openpgp

        info = openpgp.inspect_certificate(data, source=str(path))
        default_name = info.primary_name or info.fingerprint[-16:]
        key_expires = info.expires
        if expires is not None and (key_expires is None or expires < key_expires):
            key_expires = expires
        return LoadedKey(
            TrustedKey(
                name=name or default_name,
                key_id=info.fingerprint,
                kind="openpgp",
                material=info.public_armored,
                added_at=datetime.now(UTC),
                expires=key_expires,
                revoked=info.revoked,
                constraints=constraints,
                uids=tuple(info.uids),
                subkey_ids=tuple(info.signing_subkeys),
            ),
            dropped_secret=info.was_secret,
        )
    stripped = data.strip()
    default = path.name.split(".")[0] or path.name
    if stripped.startswith(b"-----BEGIN CERTIFICATE"):
        from cryptography import x509  # costs ~100 ms to import; only certificate files need it

        try:
            cert = x509.load_pem_x509_certificate(stripped + b"\n")
        except ValueError as exc:
            raise MalformedError(f"{path} is not a valid X.509 certificate", subject=str(path)) from exc
        pub = load_public_key(cert.public_key().public_bytes(*_spki_pem()), source=str(path))
        not_after = cert.not_valid_after_utc
        exp = min(not_after, expires) if expires else not_after
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        entry = trusted_key_from_public(
            pub, name=name or (str(cn[0].value) if cn else default), expires=exp, constraints=constraints
        )
        # Kept so that a CA certificate anchors chains (OCM's x-pem-file signatures), not only its own key.
        return LoadedKey(replace(entry, certificate=cert.public_bytes(_spki_pem()[0]).decode()))
    from ..keys import is_hybrid_pem

    if is_hybrid_pem(stripped):  # an Ed25519 + ML-DSA-65 bundle, both halves required
        from ..hybrid import load_hybrid_private_keys, load_hybrid_public_keys

        if b"PRIVATE KEY" in stripped:
            secret = passphrase if b"ENCRYPTED" in stripped else None
            ed, ml = load_hybrid_private_keys(stripped, passphrase=secret, source=str(path))
            pair: tuple[PublicKey, PublicKey] = (ed.public_key(), ml.public_key())
        else:
            pair = load_hybrid_public_keys(stripped, source=str(path))
        bundle = trusted_key_from_bundle(*pair, name=name or default, expires=expires, constraints=constraints)
        return LoadedKey(bundle, b"PRIVATE KEY" in stripped)
    dropped = False
    if b"PRIVATE KEY" in stripped:
        from ..keys import load_private_key

        secret = passphrase if b"ENCRYPTED" in stripped else None  # PKCS#8 "ENCRYPTED PRIVATE KEY", PKCS#1 Proc-Type
        pub = load_private_key(stripped, passphrase=secret, source=str(path)).public_key()
        dropped = True
    else:
        pub = load_public_key(stripped, source=str(path))
    return LoadedKey(
        trusted_key_from_public(pub, name=name or default, expires=expires, constraints=constraints), dropped
    )
