"""Client of the signery registry: publish, search, and fetch packages with their detached signatures.

The registry is never trusted. :func:`fetch_package` checks that what it downloads is exactly what the index
announced (name, version, size, SHA-256), which catches a broken or tampered store, but whether the package is
*trustworthy* is for the caller to decide by verifying it against its own trust store: this module never uses keys
or verdicts served by a registry, and treats every byte and field it receives as hostile.

Example::

    fetched = fetch_package("http://127.0.0.1:8080", "demo", "1.2.0", Path("downloads"))
    result = native.verify(fetched.path, trust=TrustStore(home).load(), signature=fetched.signatures[0])
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .._internal.files import staged_file
from ..errors import (
    ConflictError,
    EnvironmentFailure,
    MalformedError,
    NotFoundError,
    PolicyViolationError,
    Reason,
    SigneryError,
    TamperedError,
    UsageError,
    VerificationError,
)
from .index import PackageSummary, SignatureEntry, VersionIndex
from .naming import Version, check_filename, check_name
from .tokens import AuthenticationError

DEFAULT_TIMEOUT = 60.0  # seconds without progress before a request is abandoned
MAX_INDEX_SIZE = 4 << 20  # an index or search page is a few KiB; refuse to buffer a hostile endless JSON body
UPLOAD_CHUNK = 1 << 20  # stream uploads in 1 MiB pieces: bounded memory for any package size
DOWNLOAD_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchedPackage:
    """A downloaded package whose size and SHA-256 match the registry's index, and its detached signatures.

    Matching the index proves only that the registry served what it announced; verify before trusting.
    """

    path: Path
    name: str
    version: str
    signatures: list[Path] = field(default_factory=list)
    sha256: str = ""


def _error_from_response(response: httpx.Response, what: str) -> SigneryError:
    """Rebuild the server's error (reason code and all) from its JSON body; never trust it to be well-formed."""
    reason, message, subject = None, f"{what}: HTTP {response.status_code}", what
    with contextlib.suppress(Exception):
        err = response.json()["error"]
        reason = Reason(err["reason"])
        message = f"{what}: {str(err['message'])[:500]}"
        subject = str(err.get("subject") or what)[:200]
    status = response.status_code
    if status == 401:
        return AuthenticationError(message, subject=subject)
    if status == 404:
        return NotFoundError(message, subject=subject)
    if status == 409:
        return ConflictError(message, subject=subject)
    if reason == Reason.TAMPERED:
        return TamperedError(message, subject=subject)
    if status in (403, 422):
        if reason in (None, Reason.POLICY_VIOLATION):
            return PolicyViolationError(message, subject=subject)
        return VerificationError(message, reason=reason, subject=subject)
    if 400 <= status < 500:
        return MalformedError(message, reason=reason or Reason.MALFORMED, subject=subject)
    return EnvironmentFailure(message, subject=subject)


def _read_bounded(response: httpx.Response) -> None:
    """Load at most :data:`MAX_INDEX_SIZE` of an error body (a hostile server may send an endless one)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_INDEX_SIZE:
            break
    response._content = bytes(body[:MAX_INDEX_SIZE])


def land_files(index: VersionIndex, dest_dir: Path, produce: Callable[[str, str, int], Path]) -> FetchedPackage:
    """Bring a package and all its signatures into ``dest_dir``, all or nothing.

    ``produce(filename, sha256, size)`` writes one file to a temporary path in ``dest_dir`` and checks it against
    the index. Only when every file has arrived intact do they appear under their names; on any failure every
    temporary file is removed.
    """
    wanted = [(index.filename, index.sha256, index.size)] + [(s.filename, s.sha256, s.size) for s in index.signatures]
    temps: list[tuple[Path, str]] = []
    try:
        for filename, sha256, size in wanted:
            temps.append((produce(filename, sha256, size), filename))
        finals = []
        for tmp, filename in temps:
            final = dest_dir / check_filename(filename)
            os.replace(tmp, final)
            finals.append(final)
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    return FetchedPackage(
        path=finals[0], name=index.name, version=index.version, signatures=finals[1:], sha256=index.sha256
    )


class RegistryClient:
    """One registry at ``base_url``. Use as a context manager (it holds a connection pool)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"registry URL must start with http:// or https://: {base_url!r}", subject=base_url)
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, follow_redirects=False, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _request_json(self, method: str, url: str, *, what: str, **kwargs: Any) -> Any:
        try:
            with self._http.stream(method, url, **kwargs) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_INDEX_SIZE:
                        raise MalformedError(f"{what}: response larger than {MAX_INDEX_SIZE} bytes", subject=url)
                response._content = bytes(body)
                if response.status_code >= 400:
                    raise _error_from_response(response, what)
                try:
                    return response.json()
                except ValueError as exc:
                    raise MalformedError(f"{what}: response is not JSON", subject=url) from exc
        except httpx.HTTPError as exc:
            raise EnvironmentFailure(f"{what}: {exc.__class__.__name__}: {exc}", subject=self.base_url) from exc

    @staticmethod
    def _version_url(name: str, version: str) -> str:
        return f"/api/packages/{quote(check_name(name), safe='')}/{quote(str(Version(version)), safe='')}"

    # -- reading ------------------------------------------------------------------------------------------------

    def search(self, query: str = "") -> list[PackageSummary]:
        doc = self._request_json("GET", "/api/packages", params={"q": query}, what="search")
        if not isinstance(doc, list):
            raise MalformedError("search: response is not a list", subject=self.base_url)
        return [PackageSummary.from_dict(d) for d in doc]

    def package(self, name: str) -> PackageSummary:
        url = f"/api/packages/{quote(check_name(name), safe='')}"
        summary = PackageSummary.from_dict(self._request_json("GET", url, what=name))
        if summary.name.lower() != name.lower():
            raise TamperedError(f"asked for {name!r}, the registry answered for {summary.name!r}", subject=name)
        return summary

    def version(self, name: str, version: str | None = None) -> VersionIndex:
        """The index of name@version (latest when ``version`` is None), checked to be the one asked for."""
        if version is None:
            latest = self.package(name).latest
            if latest is None:
                raise NotFoundError(f"{name} has no published version", subject=name)
            version = latest
        ref = f"{name}@{version}"
        index = VersionIndex.from_dict(self._request_json("GET", self._version_url(name, version), what=ref))
        # The registry may be hostile: an index for another package or version must not pass for this one.
        if index.name.lower() != name.lower() or Version(index.version).key != Version(version).key:
            raise TamperedError(f"asked for {ref}, the registry answered with {index.ref}", subject=ref)
        return index

    def fetch(self, name: str, version: str | None, dest_dir: Path) -> FetchedPackage:
        """Download name@version and all its detached signatures into ``dest_dir``; see :func:`fetch_package`."""
        index = self.version(name, version)
        base = self._version_url(index.name, index.version)
        if any(s.filename == index.filename for s in index.signatures):
            raise MalformedError(f"{index.ref}: a signature has the package's file name", subject=index.filename)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)

        def download(filename: str, sha256: str, size: int) -> Path:
            if filename == index.filename:
                return self._download(f"{base}/download", sha256, size, dest_dir, index.ref)
            url = f"{base}/signatures/{quote(filename, safe='')}"
            return self._download(url, sha256, size, dest_dir, f"{index.ref}: {filename}")

        return land_files(index, dest_dir, download)

    def _download(self, url: str, sha256: str, size: int, dest_dir: Path, what: str) -> Path:
        """Stream ``url`` into a temporary file in ``dest_dir``; refuse a byte more than ``size`` or a wrong hash."""
        with staged_file(dest_dir, sha256=sha256, size=size, what=what, announced_by="the registry's index") as out:
            try:
                with self._http.stream("GET", url) as response:
                    if response.status_code >= 400:
                        _read_bounded(response)
                        raise _error_from_response(response, what)
                    if response.status_code != 200:
                        raise MalformedError(f"{what}: unexpected HTTP {response.status_code}", subject=url)
                    for chunk in response.iter_raw(DOWNLOAD_CHUNK):
                        out.write(chunk)
            except httpx.HTTPError as exc:
                raise EnvironmentFailure(f"{what}: {exc.__class__.__name__}: {exc}", subject=url) from exc
        return out.path

    # -- publishing ---------------------------------------------------------------------------------------------

    def upload(self, path: Path) -> str:
        """Stream one file to ``POST /api/uploads``; returns the sha256 the server computed (checked against ours)."""
        path = Path(path)
        size = path.stat().st_size
        local = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(UPLOAD_CHUNK):
                    local.update(chunk)
                    yield chunk

        doc = self._request_json(
            "POST",
            "/api/uploads",
            content=chunks(),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            what=f"upload {path.name}",
        )
        if not isinstance(doc, dict) or doc.get("sha256") != local.hexdigest():
            raise TamperedError(f"upload {path.name}: the registry stored different bytes", subject=str(path))
        return local.hexdigest()

    def publish(
        self,
        package: Path,
        *,
        signatures: Sequence[Path] = (),
        name: str | None = None,
        version: str | None = None,
    ) -> tuple[VersionIndex, bool]:
        """Upload a package and its detached signatures and publish them; returns the index and whether it is new.

        Publishing the same bytes again with more signatures adds the signatures (a name@version is immutable).
        """
        package = Path(package)
        check_filename(package.name, what="package file name")
        refs = []
        for sig in signatures:
            SignatureEntry(filename=Path(sig).name, sha256="0" * 64, size=0)  # name rules, before any upload
        pkg_sha = self.upload(package)
        for sig in signatures:
            refs.append({"filename": Path(sig).name, "sha256": self.upload(Path(sig))})
        body: dict[str, Any] = {"package": pkg_sha, "filename": package.name, "signatures": refs}
        if name is not None:
            body["name"] = name
        if version is not None:
            body["version"] = version
        try:
            with self._http.stream("POST", "/api/packages", json=body) as response:
                _read_bounded(response)
        except httpx.HTTPError as exc:
            raise EnvironmentFailure(f"publish: {exc.__class__.__name__}: {exc}", subject=self.base_url) from exc
        if response.status_code >= 400:
            raise _error_from_response(response, f"publish {package.name}")
        return VersionIndex.from_dict(response.json()), response.status_code == 201


def fetch_package(registry: str, name: str, version: str | None, dest_dir: Path) -> FetchedPackage:
    """Download ``name@version`` (latest when None) and every detached signature from ``registry`` into ``dest_dir``.

    The package is streamed to a temporary file, checked against the index's size and SHA-256, and only then
    renamed into place, together with its signatures (each checked likewise). On any failure nothing is left in
    ``dest_dir``. No key or verdict from the registry is used: verify ``FetchedPackage`` with the local trust store.

    Raises:
        TamperedError: the bytes, size, name or version differ from what was asked for or announced.
        NotFoundError: no such package or version.
        EnvironmentFailure: the registry cannot be reached or fails.
    """
    with RegistryClient(registry) as client:
        return client.fetch(name, version, dest_dir)


def publish_package(
    registry: str,
    package: Path,
    *,
    token: str,
    signatures: Sequence[Path] = (),
    name: str | None = None,
    version: str | None = None,
) -> tuple[VersionIndex, bool]:
    """Publish ``package`` with its detached ``signatures`` to ``registry`` using a publisher token."""
    with RegistryClient(registry, token=token) as client:
        return client.publish(package, signatures=signatures, name=name, version=version)


def search_packages(registry: str, query: str = "") -> list[PackageSummary]:
    with RegistryClient(registry) as client:
        return client.search(query)


__all__ = ["FetchedPackage", "RegistryClient", "fetch_package", "publish_package", "search_packages"]
