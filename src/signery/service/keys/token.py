"""Key versions held in the server's PKCS#11 token: their objects' names, generation, and signers.

A token-backed version is generated inside the token (sensitive, never extractable: :func:`signery.pkcs11.
generate_key`) under a label derived from the key's name and version, plus a random suffix and a random
``CKA_ID`` (a key deleted and made again under its name, or another service sharing the token, never meets an
old object). The database keeps only the public key, the key id and the object's reference: an RFC 7512 URI
path such as ``pkcs11:token=signing;object=signery.release.v1.3fa4c2d1;id=%9A...``, without module or PIN.
To sign, the reference's ``object``/``id`` are looked up in the token the server is configured with
(``--pkcs11-token``), with its module and PIN.

Errors say what the service can do about them:

- a wrong or locked PIN, a missing module, a token that is not there (removed, or another token configured):
  :class:`~signery.errors.ConfigError`, answered 503 ``config-error``. A PIN the token refused is not tried again
  by this process (a real HSM locks its PIN after a few wrong tries); fix it and restart the server.
- the token is there but the version's object is not: :class:`~signery.errors.NotFoundError`, 404 ``unknown-key``.
- the object holds another key than the database records: ``config-error``, and nothing is signed.

No message ever holds the PIN: URIs print without it, and the PIN is never part of a reference.

Every call this process makes into the PKCS#11 module goes through one lock (:data:`MODULE_LOCK`): python-pkcs11
initialises modules with ``C_Initialize(NULL)``, which by PKCS#11 promises the module it is never called from two
threads at once (SoftHSM2 then runs without its own mutexes). Concurrency comes from the server's worker processes,
each with its own sessions; a signature on a device is one round trip either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import threading
from typing import Any

from ...errors import ConfigError, NotFoundError, Reason, SigneryError
from ...keys import HashName, PublicKey, RsaPadding, public_key_pem
from ...pkcs11 import MODULE_LOCK, PKCS11URI, PKCS11Signer, generate_key, parse_uri
from ..settings import MasterKey, TokenSettings

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# PINs a token refused, per (module, token URI, salted PIN hash): never tried again by this process.
_REFUSED: dict[tuple[str, str, bytes], ConfigError] = {}
_REFUSED_LOCK = threading.Lock()
_SALT = secrets.token_bytes(16)


def token_of(master: MasterKey, *, name: str) -> TokenSettings:
    """The server's token, or a config error (503) when it has none."""
    if master.token is None:
        raise ConfigError(
            f"key {name} is kept in a PKCS#11 token, and this server has none configured",
            subject=name,
            hint="start the server with --pkcs11-token URI (module: $SIGNERY_PKCS11_MODULE, PIN: --pkcs11-pin-file)",
        )
    return master.token


def new_reference(token: TokenSettings, *, name: str, version: int) -> PKCS11URI:
    """The reference of a new version's object: the token's path attributes, a fresh label and a fresh id."""
    base = parse_uri(token.uri)
    label = f"signery.{_LABEL_UNSAFE.sub('_', name)}.v{version}.{secrets.token_hex(4)}"
    return PKCS11URI(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(PKCS11URI) if _is_path(f.name)},
        object=label,
        id=secrets.token_bytes(8),
    )


def _is_path(field: str) -> bool:
    return field not in ("object", "id", "type", "module_name", "module_path", "pin_source", "pin_value")


def reference_text(ref: PKCS11URI) -> str:
    """What the database stores: the URI path only (no module, no PIN)."""
    return str(dataclasses.replace(ref, module_name=None, module_path=None, pin_source=None, pin_value=None))


def signing_uri(token: TokenSettings, reference: str) -> PKCS11URI:
    """The URI to open a stored reference with: the configured token and module, the reference's object and id."""
    ref = parse_uri(reference)
    base = parse_uri(token.uri)
    return dataclasses.replace(base, object=ref.object, id=ref.id, pin_source=None, pin_value=None)


def _pin_key(token: TokenSettings) -> tuple[str, str, bytes]:
    pin = (token.pin or "").encode()
    return (token.module or "", token.uri, hashlib.sha256(_SALT + pin).digest())


def _refused(token: TokenSettings, key: tuple[str, str, bytes] | None = None) -> None:
    if not _REFUSED:  # the common case, without a lock or a hash
        return
    with _REFUSED_LOCK:
        err = _REFUSED.get(key or _pin_key(token))
    if err is not None:
        raise ConfigError(err.message, subject=err.subject, hint=err.hint)


def _remember_refusal(token: TokenSettings, err: ConfigError) -> None:
    if "wrong PIN" in err.message or "PIN is locked" in err.message:
        err.hint = "fix the server's PKCS#11 PIN (--pkcs11-pin-file, $SIGNERY_PKCS11_PIN) and restart it"
        with _REFUSED_LOCK:
            _REFUSED[_pin_key(token)] = err


def _token_present(token: TokenSettings) -> bool:
    """Whether the configured token is there now (no login: only its slot is looked at)."""
    from ..._internal.pkcs11_token import find_token, load_module

    uri = parse_uri(token.uri)
    assert token.module is not None
    try:
        with MODULE_LOCK:
            find_token(load_module(token.module, uri), uri)
    except NotFoundError:
        return False
    except SigneryError:
        return True  # it is there, or something else is wrong: let the original error speak
    return True


def translated(token: TokenSettings, err: SigneryError, *, name: str, version: int) -> SigneryError:
    """The error a request meets for ``err``, raised by the token while working with ``name`` v``version``."""
    if isinstance(err, ConfigError):
        _remember_refusal(token, err)
        return err
    if isinstance(err, NotFoundError):
        if not _token_present(token):
            return ConfigError(
                f"the PKCS#11 token {token.display} is not present (removed, or not the token configured), so key "
                f"{name} v{version} cannot sign",
                subject=token.display,
                hint="reconnect the token, or start the server with the --pkcs11-token that holds this key",
            )
        return NotFoundError(
            f"key {name} v{version}: its object is not in the PKCS#11 token {token.display} (deleted from it?)",
            reason=Reason.UNKNOWN_KEY,
            subject=name,
        )
    return err


def check_login(token: TokenSettings) -> None:
    """Open (and close) a logged-in session on the token: a config error naming what is wrong, never the PIN."""
    import pkcs11

    from ..._internal.pkcs11_token import fail, find_token, load_module, open_session

    _refused(token)
    uri = parse_uri(token.uri)
    assert token.module is not None
    try:
        with MODULE_LOCK:
            session = open_session(find_token(load_module(token.module, uri), uri), uri, token.pin)
            session.close()
    except pkcs11.PKCS11Error as exc:
        fail(exc, uri, "open a session")
    except NotFoundError as err:
        raise ConfigError(err.message, subject=token.display, hint="is the token present, its label right?") from None
    except ConfigError as err:
        _remember_refusal(token, err)
        raise


def generate(master: MasterKey, ref: PKCS11URI, algorithm: str, *, name: str, version: int) -> PublicKey:
    """Generate ``name`` v``version``'s key pair in the token under ``ref``; its public key."""
    token = token_of(master, name=name)
    _refused(token)
    uri = dataclasses.replace(ref, module_path=token.module)
    try:
        with MODULE_LOCK:
            return generate_key(uri, algorithm, pin=token.pin)
    except SigneryError as err:
        raise translated(token, err, name=name, version=version) from None


class TokenSigner(PKCS11Signer):
    """The :class:`~signery.pkcs11.PKCS11Signer` of one token-backed key version, as the service uses it.

    Checked against the database on first use: the token object must hold the very public key the version
    records, or nothing is signed. Errors are the service's (see the module): a missing token is a config error,
    a missing object an unknown key; a PIN the token refused is not tried again.
    """

    def __init__(self, token: TokenSettings, reference: str, *, name: str, version: int, public_pem: str) -> None:
        super().__init__(signing_uri(token, reference), module=token.module, pin=token.pin)
        self._lock = MODULE_LOCK  # every use of the session, in every signer of this process: see the module
        self.name = name
        self._token, self._version, self._expected = token, version, public_pem
        self._pin_key = _pin_key(token)

    def __repr__(self) -> str:
        return f"TokenSigner({self.name!r} v{self._version}, {str(self.uri)!r})"

    def _guarded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        _refused(self._token, self._pin_key)
        try:
            return fn(*args, **kwargs)
        except SigneryError as err:
            raise translated(self._token, err, name=self.name or "", version=self._version) from None

    def _identity(self) -> tuple[str, PublicKey]:
        fresh = self._public is None
        identity: tuple[str, PublicKey] = self._guarded(super()._identity)
        if fresh and public_key_pem(identity[1]).decode() != self._expected:
            self.close()
            self._public = self._key_id = None
            raise ConfigError(
                f"key {self.name} v{self._version}: the token object {self.uri} holds another key than the "
                "database records; refusing to sign with it",
                subject=self.name,
            )
        return identity

    # PKCS11Signer.sign and sign_digest begin with public_key(), that is with _identity() above: the key is checked.
    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        sig: bytes = self._guarded(super().sign, message, hash_name=hash_name, rsa_padding=rsa_padding)
        return sig

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        sig: bytes = self._guarded(super().sign_digest, digest, hash_name=hash_name, rsa_padding=rsa_padding)
        return sig


__all__ = [
    "MODULE_LOCK",
    "TokenSigner",
    "check_login",
    "generate",
    "new_reference",
    "reference_text",
    "signing_uri",
    "token_of",
    "translated",
]
