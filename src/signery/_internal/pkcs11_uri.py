"""RFC 7512 PKCS#11 URIs: parsing, percent-decoding, printing (never the PIN) and resolving the PIN.

``pkcs11:token=build;object=release;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin``

Path attributes (before ``?``, separated by ``;``) say which token and object; query attributes (after ``?``,
separated by ``&``) say which module to load and where the PIN is. Every value is percent-decoded; ``id`` is
binary, the rest UTF-8. An attribute this module does not know, or one given twice, is refused: a URI that is
half understood would select some other key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, UsageError

SCHEME = "pkcs11:"
# RFC 7512 path attributes -> field names.
PATH_ATTRS: dict[str, str] = {
    "token": "token",
    "manufacturer": "manufacturer",
    "serial": "serial",
    "model": "model",
    "library-manufacturer": "library_manufacturer",
    "library-description": "library_description",
    "library-version": "library_version",
    "slot-manufacturer": "slot_manufacturer",
    "slot-description": "slot_description",
    "slot-id": "slot_id",
    "object": "object",
    "type": "type",
    "id": "id",
}
QUERY_ATTRS: dict[str, str] = {
    "module-name": "module_name",
    "module-path": "module_path",
    "pin-source": "pin_source",
    "pin-value": "pin_value",
}
OBJECT_TYPES = ("public", "private", "cert", "secret-key", "data")
MAX_URI_LEN = 8192
MAX_PIN_FILE_BYTES = 4096

_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Characters printed as they are; everything else is percent-encoded (RFC 7512 allows more, but fewer is safe).
_SAFE_PATH = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:[]@!$'()*+,")
_SAFE_QUERY = _SAFE_PATH | frozenset(b"/|")


def _decode(raw: str, name: str) -> bytes:
    if _PCT.search(raw):
        raise UsageError(f"PKCS#11 URI attribute {name}: a % must be followed by two hex digits", subject=name)
    try:
        data = raw.encode("ascii")
    except UnicodeEncodeError:
        data = raw.encode("utf-8")  # tolerate unencoded UTF-8, as p11-kit does
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x25:  # %
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def _encode(value: bytes, safe: frozenset[int], *, always: bool = False) -> str:
    return "".join(chr(b) if b in safe and not always else f"%{b:02X}" for b in value)


@dataclass(frozen=True)
class PKCS11URI:
    """A parsed PKCS#11 URI. ``str()`` and ``repr()`` leave the PIN out: only :attr:`pin_value` holds it."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    library_manufacturer: str | None = None
    library_description: str | None = None
    library_version: str | None = None
    slot_manufacturer: str | None = None
    slot_description: str | None = None
    slot_id: int | None = None
    object: str | None = None
    type: str | None = None
    id: bytes | None = None
    module_name: str | None = None
    module_path: str | None = None
    pin_source: str | None = None
    pin_value: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in OBJECT_TYPES:
            raise UsageError(
                f"PKCS#11 URI: unknown object type {self.type!r}; one of {', '.join(OBJECT_TYPES)}", subject="type"
            )
        if self.pin_source is not None and self.pin_value is not None:
            raise UsageError("PKCS#11 URI: give pin-source or pin-value, not both", subject="pin-value")
        if self.slot_id is not None and self.slot_id < 0:
            raise UsageError("PKCS#11 URI: slot-id must be a non-negative number", subject="slot-id")

    def __str__(self) -> str:
        """The URI in canonical form, without ``pin-value`` (show it to people, log it)."""
        return self.to_string(include_pin=False)

    def __repr__(self) -> str:
        return f"PKCS11URI({str(self)!r})"

    def to_string(self, *, include_pin: bool = False) -> str:
        path: list[str] = []
        for attr, name in PATH_ATTRS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "id":
                path.append(f"id={_encode(value, _SAFE_PATH, always=True)}")
            else:
                path.append(f"{attr}={_encode(str(value).encode(), _SAFE_PATH)}")
        query: list[str] = []
        for attr, name in QUERY_ATTRS.items():
            value = getattr(self, name)
            if value is None or (name == "pin_value" and not include_pin):
                continue
            query.append(f"{attr}={_encode(value.encode(), _SAFE_QUERY)}")
        return SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")

    @property
    def has_pin(self) -> bool:
        return self.pin_value is not None or self.pin_source is not None

    def without_pin(self) -> PKCS11URI:
        return dataclasses.replace(self, pin_value=None)

    def selects_key(self) -> bool:
        """Whether the URI names an object (by label or id): signing and generating need one."""
        return self.object is not None or self.id is not None


def is_pkcs11_uri(text: str) -> bool:
    return text[: len(SCHEME)].lower() == SCHEME


def parse_uri(text: str) -> PKCS11URI:
    """Parse a PKCS#11 URI; a usage error (never showing a PIN) for anything malformed or not understood."""
    if not isinstance(text, str) or not is_pkcs11_uri(text):
        raise UsageError("not a PKCS#11 URI: it must start with pkcs11:")
    if len(text) > MAX_URI_LEN:
        raise UsageError(f"PKCS#11 URI longer than {MAX_URI_LEN} characters")
    rest = text[len(SCHEME) :]
    path_part, _, query_part = rest.partition("?")
    if "#" in rest:
        raise UsageError("a PKCS#11 URI has no fragment (#); percent-encode a # in a value as %23")
    values: dict[str, object] = {}
    for part, attrs, sep in ((path_part, PATH_ATTRS, ";"), (query_part, QUERY_ATTRS, "&")):
        if not part:
            continue
        for item in part.split(sep):
            name, eq, raw = item.partition("=")
            if not eq or not name:
                # The text itself is not shown: a mistyped pin-value would be.
                where = "path" if attrs is PATH_ATTRS else "query"
                raise UsageError(f"PKCS#11 URI: an attribute of the {where} is not name=value")
            if name not in attrs:
                other = QUERY_ATTRS if attrs is PATH_ATTRS else PATH_ATTRS
                where = " (it belongs in the " + ("query, after ?" if attrs is PATH_ATTRS else "path, before ?") + ")"
                raise UsageError(
                    f"PKCS#11 URI: unknown attribute {name!r}{where if name in other else ''}; "
                    f"signery knows {', '.join([*PATH_ATTRS, *QUERY_ATTRS])}",
                    subject=name,
                )
            key = attrs[name]
            if key in values:
                raise UsageError(f"PKCS#11 URI: attribute {name} given twice", subject=name)
            data = _decode(raw, name)
            if key == "id":
                values[key] = data
                continue
            try:
                value = data.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"PKCS#11 URI attribute {name} is not UTF-8", subject=name) from None
            if key == "slot_id":
                if not value.isascii() or not value.isdigit():
                    raise UsageError(f"PKCS#11 URI: slot-id must be a decimal number, not {value!r}", subject=name)
                values[key] = int(value)
            else:
                values[key] = value
    return PKCS11URI(**values)  # type: ignore[arg-type]


def coerce_uri(uri: str | PKCS11URI) -> PKCS11URI:
    return uri if isinstance(uri, PKCS11URI) else parse_uri(uri)


def resolve_pin(uri: PKCS11URI, pin: str | None) -> str | None:
    """The PIN: the URI's ``pin-value``, the file its ``pin-source`` names, else ``pin`` (or ``None``)."""
    if uri.pin_value is not None:
        return uri.pin_value
    if uri.pin_source is not None:
        return _read_pin_source(uri, uri.pin_source)
    return pin


def _read_pin_source(uri: PKCS11URI, source: str) -> str:
    if source.startswith("file://"):
        rest = source[len("file://") :]
        if not rest.startswith("/"):
            raise ConfigError(f"{uri}: pin-source {source!r} names a host; use file:/path", subject="pin-source")
        path = Path(rest)
    elif source.startswith("file:"):
        path = Path(source[len("file:") :])
    elif source.startswith("/"):
        path = Path(source)
    else:
        raise ConfigError(
            f"{uri}: pin-source must be file:/path (signery reads PINs only from files)", subject="pin-source"
        )
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_PIN_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{uri}: the PIN file {path} cannot be read: {exc.strerror}", subject=str(path)) from None
    if len(data) > MAX_PIN_FILE_BYTES:
        raise ConfigError(f"{uri}: the PIN file {path} is too large to hold a PIN", subject=str(path))
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{uri}: the PIN file {path} is not UTF-8", subject=str(path)) from None


__all__ = ["PKCS11URI", "coerce_uri", "is_pkcs11_uri", "parse_uri", "resolve_pin"]
