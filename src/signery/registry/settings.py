"""Registry settings: one validated object built by the CLI (or a test) and handed to :func:`create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .._internal.db import normalise_url
from ..errors import ConfigError
from .index import MAX_SIGNATURE_SIZE, MAX_SIGNATURES_PER_VERSION  # defined with the index, which the client reads

DEFAULT_MAX_UPLOAD_SIZE = 512 << 20  # the biggest plugin bundles we know of are ~200 MiB; twice that plus margin
MAX_SIGNATURES_PER_PUBLISH = 16  # bounded request body work
STAGING_TTL_SECONDS = 3600  # staged uploads never committed within an hour are abandoned and removed
HOST_PROTOCOLS = ("elastic", "mattermost", "dify")  # served under /elastic, /mattermost, /dify
DEFAULT_INDEX_EXPIRY = timedelta(days=7)  # a signed index a client may still accept; re-signed well before


@dataclass(frozen=True)
class RegistrySettings:
    """Where the registry keeps its data and what it accepts.

    Args:
        data_dir: blobs live in ``data_dir/blobs``; the SQLite database too when ``database_url`` is not given.
        database_url: a SQLAlchemy URL (``postgresql://...`` is served by psycopg 3); default SQLite in ``data_dir``.
        require_signatures: refuse publishing a version with no detached signature (Elastic's
            ``EPR_REQUIRE_PACKAGE_SIGNATURES``).
        max_upload_size: the largest package accepted, in bytes.
        protocols: the host protocols served (``elastic``, ``mattermost``, ``dify``), each under its own prefix.
        kibana_keys: fingerprints (hex; primary and subkeys) of the OpenPGP key Kibana is configured
            with (``xpack.fleet.packageVerification.gpgKeyPath``): its signature is served first in ``.zip.sig``,
            and an Elastic package signed without it is refused at publish unless forced.
        mattermost_keys: likewise for Mattermost's ``SignaturePublicKeyFiles`` (ordering only).
        public_url: the URL hosts reach this registry at (``https://registry.example.org``), for the absolute
            ``download_url`` Mattermost needs; default: the URL each request came in on.
        index_expiry: how long a signed index is valid (see :mod:`signery.registry.signed_index`).
        static_dir: lay the host protocols' immutable download paths out here, for nginx to serve
            (:mod:`signery.registry.static`).
    """

    data_dir: Path
    database_url: str | None = None
    require_signatures: bool = False
    max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE
    protocols: frozenset[str] = field(default_factory=lambda: frozenset(HOST_PROTOCOLS))
    kibana_keys: frozenset[str] = frozenset()
    mattermost_keys: frozenset[str] = frozenset()
    public_url: str | None = None
    index_expiry: timedelta = DEFAULT_INDEX_EXPIRY
    static_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        unknown = set(self.protocols) - set(HOST_PROTOCOLS)
        if unknown:
            raise ConfigError(
                f"unknown host protocol(s) {', '.join(sorted(unknown))}; choose from {', '.join(HOST_PROTOCOLS)}",
                subject="protocols",
            )
        object.__setattr__(self, "kibana_keys", frozenset(k.lower() for k in self.kibana_keys))
        object.__setattr__(self, "mattermost_keys", frozenset(k.lower() for k in self.mattermost_keys))
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url must be an http(s) URL: {self.public_url!r}", subject="public_url")
        if self.index_expiry <= timedelta(0):
            raise ConfigError("index_expiry must be positive", subject="index_expiry")
        if self.max_upload_size <= 0:
            raise ConfigError("max_upload_size must be positive", subject="max_upload_size")
        if self.database_url is not None:
            if not self.database_url.strip():
                raise ConfigError("database_url is empty", subject="database_url")
            normalise_url(self.database_url)  # refuse a URL signery does not use now, not when the store opens

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver spelled out (see :func:`signery._internal.db.normalise_url`)."""
        if self.database_url is None:
            return f"sqlite:///{self.data_dir.resolve() / 'registry.db'}"
        return normalise_url(self.database_url)


__all__ = [
    "DEFAULT_INDEX_EXPIRY",
    "DEFAULT_MAX_UPLOAD_SIZE",
    "HOST_PROTOCOLS",
    "MAX_SIGNATURES_PER_PUBLISH",
    "MAX_SIGNATURES_PER_VERSION",
    "MAX_SIGNATURE_SIZE",
    "STAGING_TTL_SECONDS",
    "RegistrySettings",
]
