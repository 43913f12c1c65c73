"""Keys in PKCS#11 tokens and HSMs (SoftHSM2, YubiHSM, cloud HSMs...) as signery :class:`~signery.keys.Signer`\\ s.

A token key signs exactly like a key file: the same key id (:func:`signery.keys.key_id` of its public key), the
same signature encodings (ECDSA as DER, RSA-PSS with salt = digest length, PKCS#1 v1.5 over a DigestInfo), so a
verifier cannot tell them apart. Large data is hashed here, once; the token sees a digest (RSA, ECDSA) or the
small message Ed25519 signs.

Keys are named by RFC 7512 URIs::

    signer = PKCS11Signer("pkcs11:token=build;object=release?module-path=/usr/lib/softhsm/libsofthsm2.so"
                          "&pin-source=file:/run/secrets/pin")
    with signer:
        signature = signer.sign(b"message")

The module is the URI's ``module-path``, else ``module=``; the PIN the URI's ``pin-value`` or ``pin-source`` file,
else ``pin=``. The library never reads the environment: the CLI passes ``$SIGNERY_PKCS11_MODULE`` as ``module=``.

:func:`generate_key` creates a key pair inside the token (sensitive, never extractable); :func:`export_private_key`
exists to refuse, with a reason, to take such a key out of it.

Notes: PKCS#11 logs in a process, not a session, so a second signer on a token the process is logged in to
already is not asked for its PIN again. A module reads its token list when first loaded (SoftHSM2 in particular):
tokens created later in a running process are not seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import TYPE_CHECKING, Any, cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ._internal.closing import Closing
from ._internal.pkcs11_token import (
    CURVE_PARAMS,
    ED25519_PARAMS,
    fail,
    find_private_key,
    find_token,
    load_module,
    mechanisms,
    open_session,
    public_key_from_object,
    read_public_key,
    require_mechanism,
)
from ._internal.pkcs11_uri import PKCS11URI, coerce_uri, is_pkcs11_uri, parse_uri, resolve_pin
from .errors import ConfigError, ConflictError, MalformedError, Reason, UsageError
from .keys import (
    ALGORITHMS,
    MIN_RSA_BITS,
    HashName,
    PrivateKey,
    PublicKey,
    RsaPadding,
    default_hash,
    key_id,
    short_id,
)

if TYPE_CHECKING:
    from pkcs11 import types as p11types
    from pkcs11.types import SignMixin

# RFC 8017 §9.2 note 1: the DER DigestInfo prefix for each hash, which CKM_RSA_PKCS signs with the digest.
DIGEST_INFO: dict[str, bytes] = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
DIGEST_SIZE = {"sha256": 32, "sha384": 48, "sha512": 64}
# Errors after which the session is reopened once: a token that went away and came back keeps working.
_RETRY = ("SessionHandleInvalid", "SessionClosed", "ObjectHandleInvalid", "KeyHandleInvalid", "DeviceRemoved",
          "TokenNotPresent")  # fmt: skip


def _module_of(uri: PKCS11URI, module: str | None) -> str:
    path = uri.module_path or module
    if not path:
        named = f" (module-name={uri.module_name} is not looked up; give its path)" if uri.module_name else ""
        raise ConfigError(
            f"{uri}: no PKCS#11 module to load{named}",
            subject=str(uri),
            hint="add module-path=/path/to/module.so to the URI, or set SIGNERY_PKCS11_MODULE",
        )
    return path


def _hash_name(hash_name: str) -> str:
    if hash_name not in DIGEST_SIZE:
        raise UsageError(f"unsupported hash algorithm {hash_name!r}", subject=hash_name)
    return hash_name


# python-pkcs11 initialises a module with C_Initialize(NULL), which by PKCS#11 promises the module it is never called
# from two threads at once (SoftHSM2 then runs without its own mutexes): every call this process makes into a
# module goes through this one lock, whichever signer makes it. Concurrency comes from processes, each with its own
# sessions.
MODULE_LOCK = threading.RLock()

# What PKCS#11 tokens generate (v3.0 mechanisms): ML-DSA is not among them.
TOKEN_ALGORITHMS = tuple(a for a in ALGORITHMS if not a.startswith("ml-dsa"))


class PKCS11Signer(Closing):
    """A :class:`~signery.keys.Signer` over a private key held in a PKCS#11 token.

    The session opens on first use (``key_id``, ``public_key()``, a signature) and stays open until
    :meth:`close` or the end of a ``with`` block; a lock makes the signer safe to share between threads.
    """

    def __init__(self, uri: str | PKCS11URI, *, module: str | None = None, pin: str | None = None) -> None:
        self.uri = coerce_uri(uri)  # keeps any pin-value for reopening; str() never shows it
        if not self.uri.selects_key():
            raise UsageError(f"{self.uri}: name the key with object= (its label) or id=", subject=str(self.uri))
        self._module = _module_of(self.uri, module)
        self._pin = pin
        self.name: str | None = self.uri.object or str(self.uri)
        self._lock = MODULE_LOCK  # one lock for every call into the module (see MODULE_LOCK)
        self._session: p11types.Session | None = None
        self._key: p11types.PrivateKey | None = None
        self._public: PublicKey | None = None
        self._key_id: str | None = None
        self._mechanisms: frozenset[int] = frozenset()

    def __repr__(self) -> str:  # never the PIN
        kid = f", key_id={short_id(self._key_id)!r}" if self._key_id else ""
        return f"PKCS11Signer({str(self.uri)!r}{kid})"

    # -- the session -------------------------------------------------------------------------------------------

    def _open(self) -> p11types.PrivateKey:
        if self._key is not None:
            return self._key
        import pkcs11

        lib = load_module(self._module, self.uri)
        try:
            token = find_token(lib, self.uri)
            session = open_session(token, self.uri, resolve_pin(self.uri, self._pin))
        except pkcs11.PKCS11Error as exc:
            fail(exc, self.uri, "open a session")
        try:
            key = find_private_key(session, self.uri)
            public = read_public_key(session, self.uri, key)
            self._mechanisms = mechanisms(token, self.uri)
        except BaseException as exc:
            _close_quietly(session)
            if isinstance(exc, pkcs11.PKCS11Error):
                fail(exc, self.uri, "find the key")
            raise
        if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
            _close_quietly(session)
            raise MalformedError(f"{self.uri}: RSA key of {public.key_size} bits is too weak (minimum {MIN_RSA_BITS})")
        if self._public is not None and key_id(public) != self._key_id:
            _close_quietly(session)
            raise ConfigError(
                f"{self.uri}: the token now holds another key under this name (was {short_id(self._key_id or '')})",
                reason=Reason.CONFIG_ERROR,
                subject=str(self.uri),
            )
        self._session, self._key, self._public, self._key_id = session, key, public, key_id(public)
        return key

    def _drop(self) -> None:
        if self._session is not None:
            _close_quietly(self._session)
        self._session = self._key = None

    def _run(self, action: str, mechanism: Any, data: bytes, param: Any = None) -> bytes:
        import pkcs11

        with self._lock:
            for attempt in (0, 1):
                key = self._open()
                require_mechanism(self._mechanisms, mechanism, self.uri, action)
                try:
                    signing = cast("SignMixin", key)
                    if param is None:
                        return signing.sign(data, mechanism=mechanism)
                    return signing.sign(data, mechanism=mechanism, mechanism_param=param)
                except pkcs11.PKCS11Error as exc:
                    if attempt == 0 and type(exc).__name__ in _RETRY:
                        self._drop()
                        continue
                    fail(exc, self.uri, action)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the session (the next use opens a new one)."""
        with self._lock:
            self._drop()

    # -- the Signer protocol -----------------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return self._identity()[0]

    def public_key(self) -> PublicKey:
        return self._identity()[1]

    def _identity(self) -> tuple[str, PublicKey]:
        """The key's id and public half, read from the token on first use (both are set together)."""
        with self._lock:
            if self._key_id is None or self._public is None:
                self._open()
            assert self._key_id is not None and self._public is not None
            return self._key_id, self._public

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        from pkcs11 import Mechanism

        public = self.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            return self._run("sign with EdDSA", Mechanism.EDDSA, bytes(message))
        name = _hash_name(hash_name or default_hash(public))
        return self.sign_digest(hashlib.new(name, message).digest(), hash_name=name, rsa_padding=rsa_padding)  # type: ignore[arg-type]

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        from pkcs11 import MGF, Mechanism

        public = self.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raise UsageError("Ed25519 signs whole messages, not digests; use an RSA or ECDSA key for this format")
        name = _hash_name(hash_name)
        if len(digest) != DIGEST_SIZE[name]:
            raise UsageError(f"a {name} digest is {DIGEST_SIZE[name]} bytes, got {len(digest)}")
        if isinstance(public, ec.EllipticCurvePublicKey):
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

            raw = self._run("sign with ECDSA", Mechanism.ECDSA, bytes(digest))
            half = len(raw) // 2
            if len(raw) % 2 or half != (public.curve.key_size + 7) // 8:
                raise ConfigError(f"{self.uri}: the token returned a {len(raw)}-byte ECDSA signature")
            return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        if rsa_padding == "pkcs1v15":
            return self._run("sign with RSA PKCS#1 v1.5", Mechanism.RSA_PKCS, DIGEST_INFO[name] + digest)
        if rsa_padding == "pkcs1v15-none":  # the bare digest as the PKCS#1 v1.5 payload, as `pkeyutl -sign` signs
            return self._run("sign with raw RSA PKCS#1 v1.5", Mechanism.RSA_PKCS, bytes(digest))
        if rsa_padding == "pss":
            hash_mech = {"sha256": Mechanism.SHA256, "sha384": Mechanism.SHA384, "sha512": Mechanism.SHA512}[name]
            mgf = {"sha256": MGF.SHA256, "sha384": MGF.SHA384, "sha512": MGF.SHA512}[name]
            # Salt = digest length, as FileSigner signs (RFC 8017's recommendation).
            param = (hash_mech, mgf, DIGEST_SIZE[name])
            return self._run("sign with RSA-PSS", Mechanism.RSA_PKCS_PSS, bytes(digest), param)
        raise UsageError(f"unsupported RSA padding {rsa_padding!r}")


def _close_quietly(session: p11types.Session) -> None:
    import pkcs11

    with contextlib.suppress(pkcs11.PKCS11Error):
        session.close()


# -- generating keys in the token -------------------------------------------------------------------------------


def generate_key(
    uri: str | PKCS11URI, algorithm: str = "ed25519", *, module: str | None = None, pin: str | None = None
) -> PublicKey:
    """Generate a key pair inside the token, labelled ``object=`` (and ``id=``) of ``uri``; return its public key.

    The private key is a token object that is sensitive and never extractable: it cannot leave the token. An
    object with the same label (or id) is never replaced: that is a conflict.
    """
    with MODULE_LOCK:  # generation talks to the module as signing does
        return _generate_key(uri, algorithm, module=module, pin=pin)


def _generate_key(
    uri: str | PKCS11URI, algorithm: str = "ed25519", *, module: str | None = None, pin: str | None = None
) -> PublicKey:
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag

    parsed = coerce_uri(uri)
    if algorithm not in TOKEN_ALGORITHMS:
        raise UsageError(
            f"a token key is one of {', '.join(TOKEN_ALGORITHMS)}, not {algorithm!r}", subject="--algorithm"
        )
    if parsed.object is None:
        raise UsageError(f"{parsed}: give the new key's label as object=", subject=str(parsed))
    if parsed.type not in (None, "private", "public"):
        raise UsageError(f"{parsed}: type={parsed.type} is not a key pair", subject=str(parsed))
    lib = load_module(_module_of(parsed, module), parsed)
    try:
        token = find_token(lib, parsed)
        session = open_session(token, parsed, resolve_pin(parsed, pin), rw=True)
    except pkcs11.PKCS11Error as exc:
        fail(exc, parsed, "open a session")
    try:
        if list(session.get_objects({Attribute.LABEL: parsed.object})):
            raise ConflictError(
                f"{parsed}: the token already holds an object labelled {parsed.object!r}; refusing to add another",
                subject=str(parsed),
            )
        if parsed.id is not None and list(session.get_objects({Attribute.ID: parsed.id})):
            raise ConflictError(f"{parsed}: the token already holds an object with this id", subject=str(parsed))
        have = mechanisms(token, parsed)
        if algorithm == "ed25519":
            gen, sign_mech, key_type = Mechanism.EC_EDWARDS_KEY_PAIR_GEN, Mechanism.EDDSA, KeyType.EC_EDWARDS
        elif algorithm.startswith("ecdsa-"):
            gen, sign_mech, key_type = Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA, KeyType.EC
        else:
            gen, sign_mech, key_type = Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.RSA_PKCS_PSS, KeyType.RSA
        require_mechanism(have, gen, parsed, f"generate an {algorithm} key")
        require_mechanism(have, sign_mech, parsed, f"sign with an {algorithm} key")
        common: dict[Any, Any] = {"id": parsed.id, "label": parsed.object, "store": True,
                                  "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY}  # fmt: skip
        private_template = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                            Attribute.EXTRACTABLE: False, Attribute.SIGN: True}  # fmt: skip
        public_template: dict[Any, Any] = {Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True}
        if key_type == KeyType.RSA:
            public_template[Attribute.PUBLIC_EXPONENT] = (65537).to_bytes(3, "big")
            pub, priv = session.generate_keypair(
                KeyType.RSA,
                int(algorithm.split("-")[1]),
                mechanism=gen,
                public_template=public_template,
                private_template=private_template,
                **common,
            )
        else:
            choices = ED25519_PARAMS if key_type == KeyType.EC_EDWARDS else (CURVE_PARAMS[algorithm],)
            for i, params in enumerate(choices):  # Ed25519: the OID (PKCS#11 3.1), else "edwards25519" (3.0)
                domain = session.create_domain_parameters(key_type, {Attribute.EC_PARAMS: params}, local=True)
                try:
                    pub, priv = domain.generate_keypair(
                        mechanism=gen, public_template=public_template, private_template=private_template, **common
                    )
                    break
                except pkcs11.PKCS11Error:
                    if i == len(choices) - 1:
                        raise
        if not (priv[Attribute.SENSITIVE] and not priv[Attribute.EXTRACTABLE] and priv[Attribute.TOKEN]):
            priv.destroy()
            pub.destroy()
            raise ConfigError(f"{parsed}: the token did not keep the new key sensitive and unextractable")
        return public_key_from_object(pub)
    except pkcs11.PKCS11Error as exc:
        fail(exc, parsed, f"generate an {algorithm} key")
    finally:
        _close_quietly(session)


def export_private_key(uri: str | PKCS11URI, *, module: str | None = None, pin: str | None = None) -> PrivateKey:
    """Read a private key out of the token: refused (``policy-violation``) for a sensitive or unextractable key.

    Every key :func:`generate_key` makes is both, so this always refuses for them; it returns only keys a token
    was told may be read (imported with ``CKA_SENSITIVE`` false).
    """
    import pkcs11
    from pkcs11 import Attribute, KeyType

    parsed = coerce_uri(uri)
    lib = load_module(_module_of(parsed, module), parsed)
    try:
        token = find_token(lib, parsed)
        session = open_session(token, parsed, resolve_pin(parsed, pin))
    except pkcs11.PKCS11Error as exc:
        fail(exc, parsed, "open a session")

    def refuse(why: str) -> UsageError:
        return UsageError(
            f"{parsed}: the private key {why}: it never leaves the token",
            reason=Reason.POLICY_VIOLATION,
            subject=str(parsed),
            hint="sign through the token (PKCS11Signer); back keys up with the token's own wrapping tools",
        )

    try:
        key = find_private_key(session, parsed)
        if key[Attribute.SENSITIVE] or not key[Attribute.EXTRACTABLE]:
            flags = (
                f"CKA_SENSITIVE={bool(key[Attribute.SENSITIVE])}, CKA_EXTRACTABLE={bool(key[Attribute.EXTRACTABLE])}"
            )
            raise refuse(f"is sensitive or not extractable ({flags})")
        public = read_public_key(session, parsed, key)
        try:
            if key.key_type == KeyType.RSA:
                assert isinstance(public, rsa.RSAPublicKey)
                v = {a: int.from_bytes(key[a], "big") for a in (Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1,
                     Attribute.PRIME_2, Attribute.EXPONENT_1, Attribute.EXPONENT_2, Attribute.COEFFICIENT)}  # fmt: skip
                return rsa.RSAPrivateNumbers(
                    v[Attribute.PRIME_1], v[Attribute.PRIME_2], v[Attribute.PRIVATE_EXPONENT], v[Attribute.EXPONENT_1],
                    v[Attribute.EXPONENT_2], v[Attribute.COEFFICIENT], public.public_numbers(),
                ).private_key()  # fmt: skip
            value = bytes(key[Attribute.VALUE])
        except pkcs11.AttributeSensitive:
            raise refuse("is sensitive (the token refused to read it)") from None
        if isinstance(public, ed25519.Ed25519PublicKey):
            return ed25519.Ed25519PrivateKey.from_private_bytes(value)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return ec.derive_private_key(int.from_bytes(value, "big"), public.curve)
    except pkcs11.PKCS11Error as exc:
        fail(exc, parsed, "read the key")
    finally:
        _close_quietly(session)


__all__ = [
    "PKCS11URI",
    "PKCS11Signer",
    "export_private_key",
    "generate_key",
    "is_pkcs11_uri",
    "parse_uri",
]
