"""Request and response bodies of the registry API, as pydantic models (they also document ``/docs``).

Responses are produced by :mod:`signery.registry.index`; these classes describe the same shapes for OpenAPI.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .naming import MAX_FILENAME_LENGTH, MAX_NAME_LENGTH, MAX_VERSION_LENGTH
from .settings import MAX_SIGNATURES_PER_PUBLISH

_SHA256 = r"^[0-9a-f]{64}$"


class SignatureRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(max_length=MAX_FILENAME_LENGTH, description="e.g. plugin.zip.signery.json, plugin.zip.sig")
    sha256: str = Field(pattern=_SHA256, description="digest returned by POST /api/uploads")


class PublishRequest(BaseModel):
    """Commit staged uploads as name@version (or add signatures to an identical existing version)."""

    model_config = ConfigDict(extra="forbid")
    package: str = Field(pattern=_SHA256, description="sha256 of the package bytes, as returned by POST /api/uploads")
    filename: str = Field(max_length=MAX_FILENAME_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH, description="when the package has no manifest")
    version: str | None = Field(default=None, max_length=MAX_VERSION_LENGTH)
    signatures: list[SignatureRef] = Field(default_factory=list, max_length=MAX_SIGNATURES_PER_PUBLISH)
    allow_unverifiable: bool = Field(
        default=False,
        description="publish even though no host the package is served to could verify its signatures",
    )


class UploadPublic(BaseModel):
    sha256: str
    size: int


class SignaturePublic(BaseModel):
    filename: str
    sha256: str
    size: int
    path: str


class VersionPublic(BaseModel):
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    download_path: str
    signature_path: str | None = Field(description="the first detached signature, or null when there is none")
    signatures: list[SignaturePublic]
    published_at: str | None


class PackagePublic(BaseModel):
    name: str
    latest: str | None
    signed: bool = Field(description="whether the latest version carries at least one detached signature")
    versions: list[str]


class Health(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    reason: str
    message: str
    subject: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail
