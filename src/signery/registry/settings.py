"""Registry settings: one validated object built by the CLI (or a test) and handed to :func:`create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._internal.db import normalise_url
from ..errors import ConfigError

DEFAULT_MAX_UPLOAD_SIZE = 512 << 20  # the biggest plugin bundles we know of are ~200 MiB; twice that plus margin
MAX_SIGNATURE_SIZE = 1 << 20  # a detached signature (DSSE envelope, armored OpenPGP) is a few KiB; 1 MiB is ample
MAX_SIGNATURES_PER_VERSION = 32  # author + countersignatures; more is abuse, and every one is served on each fetch
MAX_SIGNATURES_PER_PUBLISH = 16  # bounded request body work
STAGING_TTL_SECONDS = 3600  # staged uploads never committed within an hour are abandoned and removed


@dataclass(frozen=True)
class RegistrySettings:
    """Where the registry keeps its data and what it accepts.

    Args:
        data_dir: blobs live in ``data_dir/blobs``; the SQLite database too when ``database_url`` is not given.
        database_url: a SQLAlchemy URL (``postgresql://...`` is served by psycopg 3); default SQLite in ``data_dir``.
        require_signatures: refuse publishing a version with no detached signature (Elastic's
            ``EPR_REQUIRE_PACKAGE_SIGNATURES``).
        max_upload_size: the largest package accepted, in bytes.
    """

    data_dir: Path
    database_url: str | None = None
    require_signatures: bool = False
    max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
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
