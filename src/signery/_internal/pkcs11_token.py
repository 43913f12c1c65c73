"""Talking to a PKCS#11 module through python-pkcs11: loading it, finding the token and objects a URI names,
logging in, reading public keys, and turning the module's errors into signery's (never showing a PIN).

python-pkcs11 is imported here, on first use: ``import signery.pkcs11`` costs nothing until a token is used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import ConfigError, EnvironmentFailure, NotFoundError, Reason, SigneryError, UsageError
from .pkcs11_uri import PKCS11URI

if TYPE_CHECKING:
    from pkcs11 import types as p11types
    from pkcs11._pkcs11 import lib as Lib

    from ..keys import PublicKey

# DER of the EC_PARAMS a token gives for each curve signery signs with (a named-curve OID; Ed25519 also as the
# PrintableString "edwards25519" of PKCS#11 3.0).
EC_CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
}
ED25519_PARAMS = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")
CURVE_PARAMS = {"ecdsa-p256": bytes.fromhex("06082a8648ce3d030107"), "ecdsa-p384": bytes.fromhex("06052b81040022")}


def load_module(path: str, uri: PKCS11URI) -> Lib:
    """The PKCS#11 module at ``path``, loaded and initialised once per process (python-pkcs11 caches it)."""
    import pkcs11

    try:
        return pkcs11.lib(path)
    except (OSError, RuntimeError, pkcs11.PKCS11Error) as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{uri}: the PKCS#11 module {path} cannot be loaded ({detail})",
            subject=path,
            hint="give the module's path as module-path= in the URI, or module=",
        ) from None


def _tokens(lib: Lib) -> Iterator[tuple[p11types.Slot, p11types.Token]]:
    """Every slot with an initialised token; a slot whose token has gone (a removed token) is passed over."""
    import pkcs11

    try:
        slots = lib.get_slots(token_present=True)
    except pkcs11.PKCS11Error as exc:
        raise EnvironmentFailure(f"the PKCS#11 module cannot list its slots ({type(exc).__name__})") from None
    for slot in slots:
        try:
            token = slot.get_token()
        except pkcs11.PKCS11Error:
            continue
        if pkcs11.TokenFlag.TOKEN_INITIALIZED & token.flags:
            yield slot, token


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip(" \x00")
    return str(value).rstrip(" \x00")


def find_token(lib: Lib, uri: PKCS11URI) -> p11types.Token:
    """The one token the URI selects; ``unknown-key`` when none does, a usage error when several do."""
    version = "{}.{}".format(*lib.library_version)
    for name, want, have in (
        ("library-manufacturer", uri.library_manufacturer, _text(lib.manufacturer_id)),
        ("library-description", uri.library_description, _text(lib.library_description)),
        ("library-version", uri.library_version, version),
    ):
        if want is not None and want != have and not (name == "library-version" and _version_eq(want, version)):
            raise NotFoundError(f"{uri}: the PKCS#11 module's {name} is not {want!r}", reason=Reason.UNKNOWN_KEY)
    found: list[p11types.Token] = []
    for slot, token in _tokens(lib):
        if _matches(uri, slot, token):
            found.append(token)
    if not found:
        raise NotFoundError(
            f"{uri}: no PKCS#11 token matches (is the token present, and its label right?)",
            reason=Reason.UNKNOWN_KEY,
            subject=str(uri),
        )
    if len(found) > 1:
        raise UsageError(
            f"{uri}: {len(found)} PKCS#11 tokens match; add token=, serial= or slot-id= to choose one",
            subject=str(uri),
        )
    return found[0]


def _matches(uri: PKCS11URI, slot: p11types.Slot, token: p11types.Token) -> bool:
    """Whether every slot and token attribute the URI gives matches (read only when given: each is a call)."""
    checks: list[tuple[object, Callable[[], object]]] = [
        (uri.slot_id, lambda: slot.slot_id),
        (uri.slot_description, lambda: _text(slot.slot_description)),
        (uri.slot_manufacturer, lambda: _text(slot.manufacturer_id)),
        (uri.token, lambda: _text(token.label)),
        (uri.serial, lambda: _text(token.serial)),
        (uri.manufacturer, lambda: _text(token.manufacturer_id)),
        (uri.model, lambda: _text(token.model)),
    ]
    return all(want is None or get() == want for want, get in checks)


def _version_eq(want: str, have: str) -> bool:
    """``1`` and ``1.0`` name the same version."""
    a, _, b = want.partition(".")
    c, _, d = have.partition(".")
    return a.isdigit() and (b or "0").isdigit() and (int(a), int(b or "0")) == (int(c), int(d or "0"))


def open_session(token: p11types.Token, uri: PKCS11URI, pin: str | None, *, rw: bool = False) -> p11types.Session:
    """A session on ``token``, logged in with ``pin`` (a token that needs a PIN and got none is a config error)."""
    import pkcs11

    if pin is None and pkcs11.TokenFlag.LOGIN_REQUIRED & token.flags:
        raise ConfigError(
            f"{uri}: the token needs a PIN",
            subject=str(uri),
            hint="give pin-source=file:/path or pin-value= in the URI, or pin=",
        )
    try:
        session = token.open(rw=rw, user_pin=pin)
    except pkcs11.UserAlreadyLoggedIn:
        # PKCS#11 logs in the process, not the session: another session of this process is logged in already, and
        # the token did not look at this PIN. Refuse one that differs from the PIN that logged in (when signery did).
        if pin is not None and not _same_pin(token, pin):
            raise _wrong_pin(uri) from None
        try:
            return token.open(rw=rw)
        except pkcs11.PKCS11Error as exc:
            fail(exc, uri, "open a session")
    except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinInvalid):
        raise _wrong_pin(uri) from None
    except pkcs11.PinLocked:
        raise ConfigError(
            f"{uri}: the token's PIN is locked after too many wrong tries",
            subject=str(uri),
            hint="unlock it with the security officer PIN",
        ) from None
    except pkcs11.PKCS11Error as exc:
        fail(exc, uri, "log in")
    if pin is not None:
        with _LOGINS_LOCK:
            _LOGINS[_token_key(token)] = _pin_hash(pin)
    return session


# PINs that logged this process in to a token, salted and hashed: a later session must give the same PIN.
_LOGINS: dict[tuple[str, str, str], bytes] = {}
_LOGINS_LOCK = threading.Lock()
_SALT = os.urandom(16)


def _token_key(token: p11types.Token) -> tuple[str, str, str]:
    return (_text(token.manufacturer_id), _text(token.serial), _text(token.label))


def _pin_hash(pin: str) -> bytes:
    return hashlib.sha256(_SALT + pin.encode("utf-8")).digest()


def _same_pin(token: p11types.Token, pin: str) -> bool:
    with _LOGINS_LOCK:
        known = _LOGINS.get(_token_key(token))
    return known is None or hmac.compare_digest(known, _pin_hash(pin))


def _wrong_pin(uri: PKCS11URI) -> ConfigError:
    return ConfigError(f"{uri}: wrong PIN for the token (the PIN is not shown)", subject=str(uri), hint="check the PIN")


def fail(exc: BaseException, uri: PKCS11URI, action: str) -> NoReturn:
    """Raise the signery error for a python-pkcs11 error met while doing ``action``."""
    import pkcs11

    if isinstance(exc, SigneryError):
        raise exc
    name = type(exc).__name__
    detail = f" ({exc})" if str(exc) else ""
    if isinstance(exc, pkcs11.MechanismInvalid | pkcs11.MechanismParamInvalid | pkcs11.FunctionNotSupported):
        raise ConfigError(f"{uri}: the token cannot {action}: {name}{detail}", subject=str(uri)) from None
    if isinstance(
        exc,
        pkcs11.TokenNotPresent
        | pkcs11.TokenNotRecognised
        | pkcs11.DeviceRemoved
        | pkcs11.ObjectHandleInvalid
        | pkcs11.KeyHandleInvalid
        | pkcs11.SlotIDInvalid
        | pkcs11.NoSuchToken
        | pkcs11.NoSuchKey,
    ):
        raise NotFoundError(
            f"{uri}: the token or key is gone ({name}) while trying to {action}",
            reason=Reason.UNKNOWN_KEY,
            subject=str(uri),
        ) from None
    if isinstance(exc, pkcs11.UserNotLoggedIn | pkcs11.PinExpired):
        raise ConfigError(f"{uri}: not logged in to the token ({name})", subject=str(uri)) from None
    if isinstance(exc, pkcs11.KeyTypeInconsistent | pkcs11.KeySizeRange):
        raise ConfigError(f"{uri}: the key may not {action} ({name})", subject=str(uri)) from None
    raise EnvironmentFailure(f"{uri}: the PKCS#11 token failed to {action}: {name}{detail}", subject=str(uri)) from None


def _select(uri: PKCS11URI) -> dict[Any, Any]:
    from pkcs11 import Attribute

    attrs: dict[Any, Any] = {}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[Attribute.ID] = uri.id
    return attrs


def find_objects(session: p11types.Session, uri: PKCS11URI, object_class: Any) -> list[p11types.Object]:
    from pkcs11 import Attribute

    attrs = _select(uri)
    attrs[Attribute.CLASS] = object_class
    return list(session.get_objects(attrs))


def find_private_key(session: p11types.Session, uri: PKCS11URI) -> p11types.PrivateKey:
    """The one private key the URI names; ``unknown-key`` when there is none."""
    from pkcs11 import ObjectClass

    if not uri.selects_key():
        raise UsageError(f"{uri}: name the key with object= (its label) or id=", subject=str(uri))
    if uri.type not in (None, "private", "public", "cert"):
        raise UsageError(f"{uri}: type={uri.type} is not a signing key", subject=str(uri))
    found = find_objects(session, uri, ObjectClass.PRIVATE_KEY)
    if not found:
        raise NotFoundError(
            f"{uri}: the token has no private key with this label/id", reason=Reason.UNKNOWN_KEY, subject=str(uri)
        )
    if len(found) > 1:
        raise UsageError(f"{uri}: {len(found)} private keys match; add id= to choose one", subject=str(uri))
    key = found[0]
    return key  # type: ignore[return-value]


def _unwrap_point(point: bytes, raw_len: int) -> bytes:
    """EC_POINT is a DER OCTET STRING holding the point; some tokens give the bare point."""
    if len(point) == raw_len:
        return point
    if len(point) >= 2 and point[0] == 0x04:
        if point[1] < 0x80 and len(point) == 2 + point[1]:
            return point[2:]
        n = point[1] - 0x80
        if 1 <= n <= 2 and len(point) == 2 + n + int.from_bytes(point[2 : 2 + n], "big"):
            return point[2 + n :]
    raise ValueError("EC_POINT is neither a point nor a DER OCTET STRING of one")


def public_key_from_object(obj: p11types.Object) -> PublicKey:
    """A ``cryptography`` public key from a token's public key object (RSA, EC or Ed25519)."""
    from pkcs11 import Attribute, KeyType

    key_type = obj[Attribute.KEY_TYPE]
    if key_type == KeyType.RSA:
        n = int.from_bytes(obj[Attribute.MODULUS], "big")
        e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    params = bytes(obj[Attribute.EC_PARAMS])
    point = bytes(obj[Attribute.EC_POINT])
    if key_type == KeyType.EC_EDWARDS or params in ED25519_PARAMS:
        if params not in ED25519_PARAMS:
            raise ValueError("an Edwards curve other than Ed25519")
        return ed25519.Ed25519PublicKey.from_public_bytes(_unwrap_point(point, 32))
    if key_type == KeyType.EC:
        curve = EC_CURVES.get(params)
        if curve is None:
            raise ValueError(f"an unsupported EC curve (parameters {params.hex()})")
        size = (curve.key_size + 7) // 8
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, _unwrap_point(point, 1 + 2 * size))
    raise ValueError(f"an unsupported key type {key_type!r}")


def read_public_key(session: p11types.Session, uri: PKCS11URI, private: p11types.PrivateKey) -> PublicKey:
    """The public half of ``private``: the public key object beside it, else its certificate."""
    import pkcs11
    from cryptography import x509
    from pkcs11 import Attribute, ObjectClass

    # The pair shares a label and id; look for the public key by the private key's own id and label.
    pair: dict[Any, Any] = {}
    for attr in (Attribute.ID, Attribute.LABEL):
        try:
            value = private[attr]
        except pkcs11.PKCS11Error:
            continue
        if value not in (None, b"", ""):
            pair[attr] = value
    candidates: list[p11types.Object] = []
    if pair:
        candidates = list(session.get_objects({**pair, Attribute.CLASS: ObjectClass.PUBLIC_KEY}))
        if not candidates:
            certs = list(session.get_objects({**pair, Attribute.CLASS: ObjectClass.CERTIFICATE}))
            if len(certs) == 1:
                try:
                    pub = x509.load_der_x509_certificate(bytes(certs[0][Attribute.VALUE])).public_key()
                except ValueError as exc:
                    raise ConfigError(f"{uri}: the key's certificate cannot be read: {exc}") from None
                if not isinstance(pub, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
                    raise ConfigError(f"{uri}: the certificate holds an unsupported key type")
                return pub
    if len(candidates) != 1:
        raise NotFoundError(
            f"{uri}: the token has {'no' if not candidates else len(candidates)} public key or certificate "
            "beside the private key (signery needs exactly one to know the key)",
            reason=Reason.UNKNOWN_KEY,
            subject=str(uri),
        )
    try:
        return public_key_from_object(candidates[0])
    except (ValueError, pkcs11.PKCS11Error) as exc:
        raise ConfigError(f"{uri}: the token's public key cannot be used: {exc}", subject=str(uri)) from None


def mechanisms(token: p11types.Token, uri: PKCS11URI) -> frozenset[int]:
    import pkcs11

    try:
        return frozenset(int(m) for m in token.slot.get_mechanisms())
    except pkcs11.PKCS11Error as exc:
        fail(exc, uri, "list its mechanisms")


def require_mechanism(have: frozenset[int], mechanism: Any, uri: PKCS11URI, purpose: str) -> None:
    if int(mechanism) not in have:
        raise ConfigError(
            f"{uri}: the token does not offer {_mech_name(mechanism)}, needed to {purpose}",
            subject=str(uri),
        )


def _mech_name(mechanism: Any) -> str:
    return "CKM_" + str(getattr(mechanism, "name", mechanism)).lstrip("_")


__all__ = [
    "CURVE_PARAMS",
    "ED25519_PARAMS",
    "fail",
    "find_objects",
    "find_private_key",
    "find_token",
    "load_module",
    "mechanisms",
    "open_session",
    "public_key_from_object",
    "read_public_key",
    "require_mechanism",
]
