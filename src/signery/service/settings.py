"""The signing service's settings: one validated object, built by the CLI (or a test) and handed to ``create_app``.

The library never reads the environment; :mod:`signery.cli.server` does, and passes plain values here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from .._internal.db import normalise_url
from ..errors import ConfigError, UsageError

MASTER_KEY_BYTES = 32  # AES-256
MAX_MASTER_KEY_FILE_BYTES = 4096  # a base64 key is 44 bytes; refuse to read anything large
DEFAULT_RATE_PER_SECOND = 200.0  # per API key, across all servers: generous for CI, bounds a runaway client
DEFAULT_BURST = 400
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 64 KiB messages, base64, in batches of a few: 1 MiB is plenty
# The routes that take whole artifacts (balenaSign's /kmod/sign, /secureboot/efi...) stream them to disk: 256 MiB of
# artifact is 342 MiB of base64, plus the JSON around it.
DEFAULT_MAX_ARTIFACT_BODY_BYTES = 384 << 20


class MasterKey:
    """The 32-byte key that wraps every data key. Its ``repr`` never shows it.

    ``token`` is the server's PKCS#11 token (:class:`TokenSettings`), when it has one: the master key is what
    every part of the key store is handed (the key cache, create, rotate), so the token travels with it.
    :class:`Settings` binds it (``Settings(pkcs11=...)``); a bare master key has none.
    """

    __slots__ = ("_key", "key_id", "token")

    def __init__(self, key: bytes, *, token: TokenSettings | None = None) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigError(f"the master key must be {MASTER_KEY_BYTES} bytes, got {len(key)}", subject="master key")
        self._key = key
        # A public fingerprint, stored beside each wrapped key so a wrong master key is named, not a crypto error.
        self.key_id = hashlib.sha256(b"signery-master-key-id\0" + key).hexdigest()[:16]
        self.token = token

    def __repr__(self) -> str:
        token = "" if self.token is None else f", token={self.token.display!r}"
        return f"MasterKey(key_id={self.key_id!r}{token})"

    def with_token(self, token: TokenSettings | None) -> MasterKey:
        """This master key, bound to ``token`` (a new object: the original is unchanged)."""
        return MasterKey(self._key, token=token)

    @property
    def secret(self) -> bytes:
        return self._key

    @classmethod
    def from_text(cls, text: str | bytes, *, source: str) -> MasterKey:
        """Parse the base64 text form (what ``signery server init`` writes and ``SIGNERY_MASTER_KEY`` holds)."""
        raw = text.strip() if isinstance(text, bytes) else text.strip().encode()
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{source} is not a base64 master key", subject=source) from None
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"{source} holds {len(key)} bytes; a master key is {MASTER_KEY_BYTES} bytes of base64", subject=source
            )
        return cls(key)

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        try:
            with Path(path).open("rb") as fh:
                data = fh.read(MAX_MASTER_KEY_FILE_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(
                f"master key file {path} does not exist",
                subject=str(path),
                hint="create one with 'signery server init', or set SIGNERY_MASTER_KEY",
            ) from None
        except OSError as exc:
            raise ConfigError(f"master key file {path} cannot be read: {exc.strerror}", subject=str(path)) from None
        if len(data) > MAX_MASTER_KEY_FILE_BYTES:
            raise ConfigError(f"{path} is too large to be a master key file", subject=str(path))
        return cls.from_text(data, source=str(path))

    def to_text(self) -> str:
        return base64.b64encode(self._key).decode()


MAX_PIN_FILE_BYTES = 4096


@dataclass(frozen=True)
class TokenSettings:
    """The server's PKCS#11 token, for keys created with ``"storage": "pkcs11"``.

    Attributes:
        uri: an RFC 7512 URI that selects the token (``pkcs11:token=signing``, or ``serial=``, ``slot-id=``...),
            without ``object=``/``id=`` (the service names the objects it creates). It may carry ``module-path``
            and a ``pin-source`` file; a ``pin-value`` is refused (it would sit in process listings and logs).
        module: the PKCS#11 module (``$SIGNERY_PKCS11_MODULE``), unless the URI has ``module-path``.
        pin: the user PIN (from ``--pkcs11-pin-file`` or ``$SIGNERY_PKCS11_PIN``), unless the URI has a
            ``pin-source``. Never shown: not in ``repr``, messages or logs.
    """

    uri: str
    module: str | None = None
    pin: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from .._internal.pkcs11_uri import parse_uri, resolve_pin

        try:
            parsed = parse_uri(self.uri)
        except UsageError as err:
            raise ConfigError(f"--pkcs11-token: {err.message}", subject="--pkcs11-token") from None
        if parsed.pin_value is not None:
            raise ConfigError(
                "--pkcs11-token: the URI holds a pin-value; give the PIN in a file instead",
                subject="--pkcs11-token",
                hint="--pkcs11-pin-file PATH, $SIGNERY_PKCS11_PIN, or pin-source=file:/path in the URI",
            )
        if parsed.object is not None or parsed.id is not None or parsed.type is not None:
            raise ConfigError(
                f"--pkcs11-token {parsed}: name the token only; the service names the objects it creates",
                subject="--pkcs11-token",
            )
        if not parsed.module_path and not self.module:
            raise ConfigError(
                f"--pkcs11-token {parsed}: no PKCS#11 module",
                subject="--pkcs11-token",
                hint="set SIGNERY_PKCS11_MODULE=/path/to/module.so or add module-path= to the URI",
            )
        module = parsed.module_path or self.module
        assert module is not None
        if not Path(module).is_file():
            raise ConfigError(f"the PKCS#11 module {module} does not exist", subject=module)
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "pin", resolve_pin(parsed, self.pin))  # read the pin-source file once, now
        object.__setattr__(self, "uri", str(parsed))  # canonical; the pin-source is read, so drop nothing else

    @property
    def display(self) -> str:
        """The token's URI as shown in messages and logs (never a PIN)."""
        return self.uri

    @classmethod
    def from_options(
        cls, uri: str, *, module: str | None, pin_file: str | Path | None, pin_env: str | None
    ) -> TokenSettings:
        """What ``signery server`` passes: the PIN from ``pin_file`` (first line), else ``pin_env``'s value."""
        pin = pin_env or None
        if pin_file is not None:
            path = Path(pin_file)
            try:
                with path.open("rb") as fh:
                    data = fh.read(MAX_PIN_FILE_BYTES + 1)
            except OSError as exc:
                raise ConfigError(f"the PIN file {path} cannot be read: {exc.strerror}", subject=str(path)) from None
            if len(data) > MAX_PIN_FILE_BYTES:
                raise ConfigError(f"the PIN file {path} is too large to hold a PIN", subject=str(path))
            try:
                pin = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ConfigError(f"the PIN file {path} is not UTF-8", subject=str(path)) from None
        return cls(uri=uri, module=module, pin=pin)


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate (chain, PEM) and its private key (PEM, unencrypted, private to its owner)."""

    cert: Path
    key: Path


def _no_password() -> bytes:
    return b""  # an encrypted key then fails to load instead of prompting on a terminal


def tls_files(cert: str | Path | None, key: str | Path | None) -> TlsFiles | None:
    """Check ``--tls-cert``/``--tls-key`` before the server starts: both or neither, the key file readable by its owner
    only, and the two loading together as a TLS server identity.

    Raises:
        ConfigError: what is wrong, naming the file or option.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "--tls-cert" if cert is None else "--tls-key"
        raise ConfigError(f"--tls-cert and --tls-key go together: {missing} is missing", subject=missing)
    cert_path, key_path = Path(cert), Path(key)
    for what, path in (("certificate", cert_path), ("key", key_path)):
        if not path.is_file():
            raise ConfigError(f"TLS {what} file {path} does not exist or is not a file", subject=str(path))
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"TLS key file {key_path} is accessible by group or others (mode {mode:04o})",
            subject=str(key_path),
            hint=f"chmod 600 {key_path}",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"TLS certificate {cert_path} and key {key_path} do not load as a pair (PEM, matching, key unencrypted): "
            f"{getattr(exc, 'reason', None) or exc}",
            subject=str(key_path),
        ) from None
    return TlsFiles(cert=cert_path, key=key_path)


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to run.

    Attributes:
        database_url: ``sqlite:///path`` or ``postgresql://...``.
        master_key: wraps the per-key data keys.
        rate_per_second: token-bucket refill per API key (shared through the database by every server).
        burst: token-bucket size per API key.
        max_body_bytes: larger request bodies are refused with 413.
        max_artifact_body_bytes: the same for the routes that stream whole artifacts to disk (``/balena/...``).
        spool_dir: where those routes keep artifacts while they are signed (default: ``signery-spool`` beside
            a SQLite database, else the system's temporary directory).
        pkcs11: the PKCS#11 token that holds the keys created with ``"storage": "pkcs11"`` (none: such keys
            cannot be created or used). Bound to ``master_key`` (:meth:`MasterKey.with_token`).
    """

    database_url: str
    master_key: MasterKey
    rate_per_second: float = DEFAULT_RATE_PER_SECOND
    burst: int = DEFAULT_BURST
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_artifact_body_bytes: int = DEFAULT_MAX_ARTIFACT_BODY_BYTES
    spool_dir: Path | None = None
    pkcs11: TokenSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", normalise_url(self.database_url))
        if self.pkcs11 is not None and self.master_key.token is not self.pkcs11:
            object.__setattr__(self, "master_key", self.master_key.with_token(self.pkcs11))
        if self.spool_dir is None:
            import tempfile

            from .._internal.db import sqlite_file

            db_file = sqlite_file(self.database_url)
            base = db_file.parent if db_file is not None else Path(tempfile.gettempdir())
            object.__setattr__(self, "spool_dir", base / "signery-spool")
        if not self.rate_per_second > 0:
            raise ConfigError("the rate limit must be positive", subject="rate_per_second")
        if self.burst < 1:
            raise ConfigError("the burst must be at least 1", subject="burst")
        if self.max_body_bytes < 1024:
            raise ConfigError("the body limit must be at least 1 KiB", subject="max_body_bytes")
        if self.max_artifact_body_bytes < self.max_body_bytes:
            raise ConfigError(
                "the artifact body limit must be at least the body limit", subject="max_artifact_body_bytes"
            )
