"""The signing service's settings: one validated object, built by the CLI (or a test) and handed to ``create_app``.

The library never reads the environment; :mod:`signery.cli.server` does, and passes plain values here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from .._internal.db import normalise_url
from ..errors import ConfigError

MASTER_KEY_BYTES = 32  # AES-256
MAX_MASTER_KEY_FILE_BYTES = 4096  # a base64 key is 44 bytes; refuse to read anything large
DEFAULT_RATE_PER_SECOND = 200.0  # per API key, across all servers: generous for CI, bounds a runaway client
DEFAULT_BURST = 400
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 64 KiB messages, base64, in batches of a few: 1 MiB is plenty


class MasterKey:
    """The 32-byte key that wraps every data key. Its ``repr`` never shows it."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ConfigError(f"the master key must be {MASTER_KEY_BYTES} bytes, got {len(key)}", subject="master key")
        self._key = key
        # A public fingerprint, stored beside each wrapped key so a wrong master key is named, not a crypto error.
        self.key_id = hashlib.sha256(b"signery-master-key-id\0" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

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
    """

    database_url: str
    master_key: MasterKey
    rate_per_second: float = DEFAULT_RATE_PER_SECOND
    burst: int = DEFAULT_BURST
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", normalise_url(self.database_url))
        if not self.rate_per_second > 0:
            raise ConfigError("the rate limit must be positive", subject="rate_per_second")
        if self.burst < 1:
            raise ConfigError("the burst must be at least 1", subject="burst")
        if self.max_body_bytes < 1024:
            raise ConfigError("the body limit must be at least 1 KiB", subject="max_body_bytes")
