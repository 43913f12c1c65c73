"""One bounded HTTP client for every server signery talks to: the signing service and the package registry.

:class:`HttpClient` wraps :class:`httpx.Client` with what both clients need, done one way:

- a base URL, default headers (an API key, a bearer token), an optional private CA (``ca_file``), timeouts, no
  redirects followed;
- a hard cap on every response body, enforced while it streams: a ``Content-Length`` over the cap is refused before
  a byte is read, and a body that grows past it is cut off at the cap; nothing is ever read whole first;
- JSON answers parsed by :func:`signery._internal.parse.load_json` (bounded size and depth, no duplicate keys);
- downloads streamed into a :class:`~signery._internal.files.StagedFile` (hashed and size-checked while they are
  written, nothing left behind on failure), uploads streamed from a file in chunks; both report
  ``progress(n_bytes)`` with the bytes moved since the last call, as they go over the wire;
- transport failures (refused connection, timeout, TLS) become :class:`~signery.errors.EnvironmentFailure` (exit 3),
  and HTTP error statuses the signery error the client's ``errors`` mapper picks, carrying the server's own
  message and reason; messages name the URL without credentials, never a header.

No private httpx attribute is touched: bodies are read with ``iter_bytes``/``iter_raw`` only.

Example::

    with HttpClient("https://registry.example.org", headers={"Authorization": "Bearer ..."}) as http:
        doc = http.request_json("GET", "/api/packages", params={"q": "demo"}, what="search")
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import (
    ConfigError,
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
from .closing import Closing
from .files import StagedFile
from .parse import load_json

Progress = Callable[[int], None]
"""Told the number of bytes moved since its last call (an increment, as :meth:`signery.cli._common.Progress.advance`
takes it)."""

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)  # seconds without progress, and to connect
DEFAULT_MAX_RESPONSE_BYTES = 4 << 20  # an index, a key listing, a signature: a few KiB; bound a hostile server
MAX_ERROR_BODY = 64 << 10  # an error document is a few hundred bytes; a longer one is read only this far
MAX_SERVER_MESSAGE = 500  # characters of a server's message quoted in ours
CHUNK = 1 << 20  # bytes per read and per write when streaming: bounded memory for any size


def redact_url(url: str) -> str:
    """``url`` without user name and password (``https://u:p@host/x`` -> ``https://host/x``), for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def tls_context(ca_file: str | Path) -> ssl.SSLContext:
    """A client TLS context that trusts exactly the CA certificates in ``ca_file`` (PEM), e.g. a private CA."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except FileNotFoundError:
        raise ConfigError(f"CA file {ca_file} does not exist", subject=str(ca_file)) from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"CA file {ca_file} holds no usable PEM certificates: {exc}", subject=str(ca_file)) from None


@dataclass(frozen=True)
class HttpFailure:
    """An HTTP error status, as a client's error mapper sees it: what the server said, bounded and untrusted.

    ``reason``, ``message`` and ``subject`` come from the server's ``{"error": {...}}`` document when it sent a
    well-formed one (``None`` otherwise); ``message`` is cut to :data:`MAX_SERVER_MESSAGE` characters.
    """

    status: int
    url: str  # without credentials
    what: str
    reason: Reason | None = None
    message: str | None = None
    subject: str | None = None
    retry_after: str | None = None

    @property
    def text(self) -> str:
        """``WHAT: SERVER MESSAGE (HTTP 404 from URL)``: the line most errors carry."""
        said = f": {self.message}" if self.message else ""
        return f"{self.what}{said} (HTTP {self.status} from {self.url})"


ErrorMapper = Callable[[HttpFailure], SigneryError]


def error_for_status(failure: HttpFailure) -> SigneryError:
    """The signery error for an HTTP error status, rebuilt from the server's reason code when it gave one.

    401 is a :class:`~signery.errors.VerificationError` of reason ``policy-violation`` (a missing or bad token), 404
    :class:`~signery.errors.NotFoundError`, 409 :class:`~signery.errors.ConflictError`, 403 and 422 a refusal
    (:class:`~signery.errors.PolicyViolationError`, or the verification error the reason names), other 4xx
    :class:`~signery.errors.MalformedError`, and 5xx (or anything else) :class:`~signery.errors.EnvironmentFailure`.
    """
    status, reason, text = failure.status, failure.reason, failure.text
    subject = failure.subject or failure.what
    if status == 401:
        return VerificationError(text, reason=Reason.POLICY_VIOLATION, subject=subject)
    if status == 404:
        return NotFoundError(text, subject=subject)
    if status == 409:
        return ConflictError(text, subject=subject)
    if reason == Reason.TAMPERED:
        return TamperedError(text, subject=subject)
    if status in (403, 422):
        if reason in (None, Reason.POLICY_VIOLATION):
            return PolicyViolationError(text, subject=subject)
        return VerificationError(text, reason=reason, subject=subject)
    if 400 <= status < 500:
        return MalformedError(text, reason=reason or Reason.MALFORMED, subject=subject)
    return EnvironmentFailure(text, subject=subject)


@dataclass(frozen=True)
class Uploaded:
    """What :meth:`HttpClient.upload` sent (its size and SHA-256, computed while sending) and the server's answer."""

    reply: Any
    sha256: str
    size: int


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class HttpClient(Closing):
    """A keep-alive client of one server at ``base_url``; use as a context manager or :meth:`close` it.

    Args:
        base_url: ``http://`` or ``https://`` URL; request paths are relative to it.
        headers: sent with every request (``User-Agent``, an API key, a bearer token). Never shown in messages.
        ca_file: PEM CA certificates to trust for ``https://`` instead of the system's.
        timeout: seconds (or an :class:`httpx.Timeout`) without progress before a request is abandoned.
        max_response_bytes: the most a JSON answer may hold.
        service: how messages name the server (``"signing service"``, ``"registry"``).
        errors: maps an HTTP error status to the signery error to raise (default :func:`error_for_status`).
        retry_statuses / max_retries / max_retry_wait: answers to retry (e.g. 429, 503), honouring ``Retry-After``
            up to ``max_retry_wait`` seconds; only requests whose body can be sent again are retried.
        transport: an httpx transport (tests).
        hint: added to a transport failure's message (what the user can do about it).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        ca_file: str | Path | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        service: str = "server",
        errors: ErrorMapper = error_for_status,
        retry_statuses: Collection[int] = (),
        max_retries: int = 0,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = redact_url(str(base_url))
            raise UsageError(f"{service} URL {shown!r} must be an http:// or https:// URL", subject=shown)
        self.base_url = base_url.rstrip("/")
        self.display_url = redact_url(self.base_url)
        self.service = service
        self.max_response_bytes = max_response_bytes
        self._errors = errors
        self._retry_statuses = frozenset(retry_statuses)
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait
        verify: ssl.SSLContext | bool = tls_context(ca_file) if ca_file is not None else True
        try:
            self._http = httpx.Client(
                base_url=self.base_url,
                headers=dict(headers or {}),
                timeout=timeout,
                verify=verify,
                follow_redirects=False,
                transport=transport,
            )
        except httpx.InvalidURL as exc:
            raise UsageError(
                f"{service} URL {self.display_url!r} is not valid: {exc}", subject=self.display_url
            ) from None

    def __repr__(self) -> str:  # never the headers: they hold credentials
        return f"HttpClient({self.display_url!r})"

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        """``path`` under the base URL, without credentials: how messages name a request."""
        return f"{self.display_url}{path}" if path.startswith("/") else f"{self.display_url}/{path}"

    # -- the one way a request is made --------------------------------------------------------------------------

    @contextlib.contextmanager
    def stream(
        self, method: str, path: str, *, what: str, retry: bool = True, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        """A response with a 2xx status whose body is still to be read (``iter_bytes``/``iter_raw``).

        An error status is read (at most :data:`MAX_ERROR_BODY` bytes) and raised as the mapper's signery error; any
        other non-2xx status is an :class:`~signery.errors.EnvironmentFailure`. Transport failures, also while the
        caller reads the body, become :class:`~signery.errors.EnvironmentFailure`.
        """
        url = self.url(path)
        attempt = 0
        while True:
            wait: float | None = None
            try:
                with self._http.stream(method, path, **kwargs) as response:
                    status = response.status_code
                    if retry and status in self._retry_statuses and attempt < self._max_retries:
                        wait = self._retry_wait(response.headers.get("retry-after"), attempt)
                    if wait is None:
                        if status >= 400:
                            raise self._errors(self._failure(response, url, what))
                        if not 200 <= status < 300:
                            raise EnvironmentFailure(
                                f"{what}: unexpected HTTP {status} from {url}", subject=self.display_url
                            )
                        yield response
                        return
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, url) from exc
            except httpx.InvalidURL as exc:
                raise UsageError(f"{what}: invalid URL {url!r}: {exc}", subject=url) from None
            attempt += 1
            time.sleep(wait)

    def _retry_wait(self, header: str | None, attempt: int) -> float | None:
        """Seconds to wait before retrying, or ``None`` when the server asks for longer than we wait."""
        try:
            wait = float(header) if header is not None else float(min(self._max_retry_wait, 0.5 * 2**attempt))
        except ValueError:
            wait = float(min(self._max_retry_wait, 0.5 * 2**attempt))
        if wait < 0 or wait > self._max_retry_wait:
            return None
        return wait

    def _failure(self, response: httpx.Response, url: str, what: str) -> HttpFailure:
        body = bytearray()
        with contextlib.suppress(httpx.HTTPError):  # what the server said is a courtesy; the status is the answer
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= MAX_ERROR_BODY:
                    break
        reason = message = subject = None
        with contextlib.suppress(SigneryError, ValueError, KeyError, TypeError, AttributeError):
            err = load_json(bytes(body[:MAX_ERROR_BODY]), source=f"{self.service} error", max_bytes=MAX_ERROR_BODY)[
                "error"
            ]
            if isinstance(err.get("message"), str):
                message = err["message"][:MAX_SERVER_MESSAGE]
            if isinstance(err.get("subject"), str):
                subject = err["subject"][:200]
            reason = Reason(err.get("reason"))
        return HttpFailure(
            status=response.status_code,
            url=url,
            what=what,
            reason=reason,
            message=message,
            subject=subject,
            retry_after=response.headers.get("retry-after"),
        )

    def _transport_error(self, exc: httpx.HTTPError, url: str) -> EnvironmentFailure:
        untrusted = _certificate_error(exc)
        if untrusted is not None:
            return EnvironmentFailure(
                f"{self.service} {self.display_url} presented a certificate this client does not trust: "
                f"{untrusted.verify_message or untrusted.reason}",
                subject=self.display_url,
                hint="pass --ca-file (or set SIGNERY_CA_FILE) to the CA certificate that issued it",
            )
        detail = str(exc).replace(self.base_url, self.display_url)
        return EnvironmentFailure(
            f"{self.service} {self.display_url} unreachable ({url}): {type(exc).__name__}: {detail}",
            subject=self.display_url,
        )

    # -- JSON ---------------------------------------------------------------------------------------------------

    def _read_capped(self, response: httpx.Response, url: str, what: str) -> bytes:
        cap = self.max_response_bytes
        declared = _declared_length(response)
        if declared is not None and declared > cap:
            raise EnvironmentFailure(
                f"{what}: {self.service} sent an oversized response ({declared} bytes announced, at most {cap} "
                f"accepted) from {url}",
                subject=what,
            )
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise EnvironmentFailure(
                    f"{what}: {self.service} sent an oversized response (more than {cap} bytes) from {url}",
                    subject=what,
                )
        return bytes(body)

    def request_json(self, method: str, path: str, *, what: str, retry: bool = True, **kwargs: Any) -> Any:
        """Send a request and return its JSON answer (``None`` for a 204 or an empty body).

        ``kwargs`` are httpx's (``json=``, ``params=``, ``content=``, ``headers=``).

        Raises:
            MalformedError: the answer is not JSON (or too deeply nested, or has duplicate keys).
            EnvironmentFailure: unreachable, a transport failure, an answer over ``max_response_bytes``, or 5xx.
            SigneryError: what the error mapper makes of an HTTP error status.
        """
        with self.stream(method, path, what=what, retry=retry, **kwargs) as response:
            return self.read_json(response, what=what)

    def read_json(self, response: httpx.Response, *, what: str) -> Any:
        """The JSON body of a response from :meth:`stream` (``None`` when empty), read within the cap."""
        url = redact_url(str(response.request.url))
        body = self._read_capped(response, url, what)
        if not body.strip():
            return None
        return load_json(body, source=f"{what} ({url})", max_bytes=self.max_response_bytes)

    # -- files --------------------------------------------------------------------------------------------------

    def download(
        self,
        path: str,
        dest_dir: Path,
        *,
        what: str,
        sha256: str | None = None,
        size: int | None = None,
        limit: int | None = None,
        announced_by: str = "what was expected",
        progress: Progress | None = None,
    ) -> Path:
        """Stream ``GET path`` into a temporary file in ``dest_dir``, checked, durable, still under its temporary
        name (the caller renames it, or removes it); see :class:`~signery._internal.files.StagedFile`.

        ``size`` and ``sha256`` are what someone announced: a ``Content-Length`` over ``size`` (or ``limit``) is
        refused before a byte is read, a body past it as soon as it gets there, and a wrong hash at the end. On any
        failure nothing is left in ``dest_dir``. ``progress`` is told each chunk's size as it arrives.
        """
        url = self.url(path)
        with (
            StagedFile(
                Path(dest_dir), sha256=sha256, size=size, limit=limit, what=what, announced_by=announced_by
            ) as out,
            self.stream("GET", path, what=what) as response,
        ):
            if response.status_code != 200:
                raise MalformedError(f"{what}: unexpected HTTP {response.status_code} from {url}", subject=url)
            declared = _declared_length(response)
            if declared is not None and size is not None and declared > size:
                raise TamperedError(
                    f"{what}: {self.service} announces {declared} bytes, more than the {size} bytes "
                    f"{announced_by} announced",
                    subject=what,
                )
            if declared is not None and limit is not None and declared > limit:
                raise MalformedError(f"{what} is larger than {limit} bytes ({declared} announced)", subject=what)
            for chunk in response.iter_raw(CHUNK):
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        return out.path

    def upload(
        self,
        method: str,
        path: str,
        file: Path,
        *,
        what: str,
        content_type: str = "application/octet-stream",
        progress: Progress | None = None,
    ) -> Uploaded:
        """Stream ``file`` as the request body (``Content-Length`` set, chunks of :data:`CHUNK`), hashing it as it
        goes; ``progress`` is told each chunk's size once it has been handed to the connection.

        The size is taken when the upload starts; a file that shrinks meanwhile fails the request, one that grows is
        sent only as far as that size (the returned SHA-256 covers exactly what was sent). Never retried.
        """
        file = Path(file)
        size = file.stat().st_size
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            left = size
            with file.open("rb") as fh:
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        raise EnvironmentFailure(f"{file} shrank while it was being sent", subject=str(file))
                    left -= len(chunk)
                    digest.update(chunk)
                    yield chunk
                    if progress is not None:  # the transport asked for more: this chunk has gone
                        progress(len(chunk))

        reply = self.request_json(
            method,
            path,
            what=what,
            retry=False,
            content=body(),
            headers={"Content-Length": str(size), "Content-Type": content_type},
        )
        return Uploaded(reply=reply, sha256=digest.hexdigest(), size=size)


__all__ = [
    "CHUNK",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "ErrorMapper",
    "HttpClient",
    "HttpFailure",
    "Progress",
    "Uploaded",
    "error_for_status",
    "redact_url",
    "tls_context",
]
