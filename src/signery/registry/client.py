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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .._internal.closing import Closing
from .._internal.http import HttpClient, HttpFailure, Progress, error_for_status
from ..errors import MalformedError, NotFoundError, SigneryError, TamperedError, UsageError
from .index import PackageSummary, SignatureEntry, VersionIndex
from .naming import Version, check_filename, check_name
from .tokens import AuthenticationError

DEFAULT_TIMEOUT = 60.0  # seconds without progress before a request is abandoned
MAX_INDEX_SIZE = 4 << 20  # an index or search page is a few KiB; refuse to buffer a hostile endless JSON body


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


def _registry_error(failure: HttpFailure) -> SigneryError:
    """The registry's HTTP errors, rebuilt from its reason codes (a missing or bad token is AuthenticationError)."""
    if failure.status == 401:
        return AuthenticationError(failure.text, subject=failure.subject or failure.what)
    return error_for_status(failure)


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


class RegistryClient(Closing):
    """One registry at ``base_url``. Use as a context manager (it holds a connection pool).

    ``ca_file``: PEM CA certificates to trust for an ``https://`` registry instead of the system's.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"registry URL must start with http:// or https://: {base_url!r}", subject=base_url)
        headers = {"User-Agent": "signery"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = HttpClient(
            base_url,
            headers=headers,
            ca_file=ca_file,
            timeout=timeout,
            max_response_bytes=MAX_INDEX_SIZE,
            service="registry",
            errors=_registry_error,
            transport=transport,
        )
        self.base_url = self._http.display_url

    def __repr__(self) -> str:  # never the token
        return f"RegistryClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _version_url(name: str, version: str) -> str:
        return f"/api/packages/{quote(check_name(name), safe='')}/{quote(str(Version(version)), safe='')}"

    # -- reading ------------------------------------------------------------------------------------------------

    def search(self, query: str = "") -> list[PackageSummary]:
        doc = self._http.request_json("GET", "/api/packages", params={"q": query}, what="search")
        if not isinstance(doc, list):
            raise MalformedError("search: response is not a list", subject=self.base_url)
        return [PackageSummary.from_dict(d) for d in doc]

    def package(self, name: str) -> PackageSummary:
        url = f"/api/packages/{quote(check_name(name), safe='')}"
        summary = PackageSummary.from_dict(self._http.request_json("GET", url, what=name))
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
        index = VersionIndex.from_dict(self._http.request_json("GET", self._version_url(name, version), what=ref))
        # The registry may be hostile: an index for another package or version must not pass for this one.
        if index.name.lower() != name.lower() or Version(index.version).key != Version(version).key:
            raise TamperedError(f"asked for {ref}, the registry answered with {index.ref}", subject=ref)
        return index

    def fetch(
        self, name: str, version: str | None, dest_dir: Path, *, progress: Progress | None = None
    ) -> FetchedPackage:
        """Download name@version and all its detached signatures into ``dest_dir``; see :func:`fetch_package`.

        ``progress`` is told the bytes of the package and its signatures as they arrive (increments); their total
        is :func:`download_size` of the index.
        """
        index = self.version(name, version)
        return self.fetch_index(index, dest_dir, progress=progress)

    def fetch_index(self, index: VersionIndex, dest_dir: Path, *, progress: Progress | None = None) -> FetchedPackage:
        """Download what ``index`` (from :meth:`version`) announces; see :meth:`fetch`."""
        base = self._version_url(index.name, index.version)
        if any(s.filename == index.filename for s in index.signatures):
            raise MalformedError(f"{index.ref}: a signature has the package's file name", subject=index.filename)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)

        def download(filename: str, sha256: str, size: int) -> Path:
            if filename == index.filename:
                url, what = f"{base}/download", index.ref
            else:
                url, what = f"{base}/signatures/{quote(filename, safe='')}", f"{index.ref}: {filename}"
            return self._http.download(
                url,
                dest_dir,
                what=what,
                sha256=sha256,
                size=size,
                announced_by="the registry's index",
                progress=progress,
            )

        return land_files(index, dest_dir, download)

    def signed_index(self) -> bytes:
        """The registry's signed index document, unverified (see :mod:`signery.registry.signed_index`)."""
        from .signed_index import MAX_SIGNED_INDEX

        with self._http.stream("GET", "/api/index", what="signed index") as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_SIGNED_INDEX:
                    raise MalformedError(f"the signed index is over {MAX_SIGNED_INDEX} bytes", subject="index")
        return bytes(body)

    # -- publishing ---------------------------------------------------------------------------------------------

    def upload(self, path: Path, *, progress: Progress | None = None) -> str:
        """Stream one file to ``POST /api/uploads``; returns the sha256 the server computed (checked against ours).

        ``progress`` is told the bytes sent as they go (increments).
        """
        path = Path(path)
        sent = self._http.upload("POST", "/api/uploads", path, what=f"upload {path.name}", progress=progress)
        doc = sent.reply
        if not isinstance(doc, dict) or doc.get("sha256") != sent.sha256 or doc.get("size") != sent.size:
            raise TamperedError(f"upload {path.name}: the registry stored different bytes", subject=str(path))
        return sent.sha256

    def publish(
        self,
        package: Path,
        *,
        signatures: Sequence[Path] = (),
        name: str | None = None,
        version: str | None = None,
        progress: Progress | None = None,
        allow_unverifiable: bool = False,
    ) -> tuple[VersionIndex, bool]:
        """Upload a package and its detached signatures and publish them; returns the index and whether it is new.

        Publishing the same bytes again with more signatures adds the signatures (a name@version is immutable).
        ``progress`` is told the bytes sent as they go (increments); their total is the files' sizes summed.
        """
        package = Path(package)
        check_filename(package.name, what="package file name")
        refs = []
        for sig in signatures:
            SignatureEntry(filename=Path(sig).name, sha256="0" * 64, size=0)  # name rules, before any upload
        pkg_sha = self.upload(package, progress=progress)
        for sig in signatures:
            refs.append({"filename": Path(sig).name, "sha256": self.upload(Path(sig), progress=progress)})
        body: dict[str, Any] = {"package": pkg_sha, "filename": package.name, "signatures": refs}
        if name is not None:
            body["name"] = name
        if version is not None:
            body["version"] = version
        if allow_unverifiable:
            body["allow_unverifiable"] = True
        created = False

        def commit() -> Any:
            nonlocal created
            with self._http.stream("POST", "/api/packages", json=body, what=f"publish {package.name}") as response:
                created = response.status_code == 201
                return self._http.read_json(response, what=f"publish {package.name}")

        return VersionIndex.from_dict(commit()), created


def download_size(index: VersionIndex) -> int:
    """The bytes :meth:`RegistryClient.fetch` moves for ``index``: the package and every signature."""
    return index.size + sum(s.size for s in index.signatures)


def fetch_package(
    registry: str,
    name: str,
    version: str | None,
    dest_dir: Path,
    *,
    ca_file: str | Path | None = None,
    progress: Progress | None = None,
) -> FetchedPackage:
    """Download ``name@version`` (latest when None) and every detached signature from ``registry`` into ``dest_dir``.

    The package is streamed to a temporary file, checked against the index's size and SHA-256, and only then
    renamed into place, together with its signatures (each checked likewise). On any failure nothing is left in
    ``dest_dir``. No key or verdict from the registry is used: verify ``FetchedPackage`` with the local trust store.

    Raises:
        TamperedError: the bytes, size, name or version differ from what was asked for or announced.
        NotFoundError: no such package or version.
        EnvironmentFailure: the registry cannot be reached or fails.
    """
    with RegistryClient(registry, ca_file=ca_file) as client:
        return client.fetch(name, version, dest_dir, progress=progress)


def publish_package(
    registry: str,
    package: Path,
    *,
    token: str,
    signatures: Sequence[Path] = (),
    name: str | None = None,
    version: str | None = None,
    ca_file: str | Path | None = None,
    progress: Progress | None = None,
    allow_unverifiable: bool = False,
) -> tuple[VersionIndex, bool]:
    """Publish ``package`` with its detached ``signatures`` to ``registry`` using a publisher token.

    ``progress`` is told the bytes sent as they go (increments). ``allow_unverifiable`` publishes a package whose
    signatures no host it is served to could verify (otherwise refused, ``policy-violation``).
    """
    with RegistryClient(registry, token=token, ca_file=ca_file) as client:
        return client.publish(
            package,
            signatures=signatures,
            name=name,
            version=version,
            progress=progress,
            allow_unverifiable=allow_unverifiable,
        )


def search_packages(registry: str, query: str = "", *, ca_file: str | Path | None = None) -> list[PackageSummary]:
    with RegistryClient(registry, ca_file=ca_file) as client:
        return client.search(query)


__all__ = [
    "FetchedPackage",
    "RegistryClient",
    "download_size",
    "fetch_package",
    "publish_package",
    "search_packages",
]
