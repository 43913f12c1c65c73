"""The one bounded HTTP client (signery._internal.http): caps enforced while streaming, errors as signery errors
carrying the server's message, URLs named without credentials, progress on uploads and downloads."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from signery._internal.http import HttpClient, redact_url
from signery.errors import (
    ConflictError,
    EnvironmentFailure,
    MalformedError,
    NotFoundError,
    TamperedError,
    UsageError,
    VerificationError,
)


class Watched(httpx.SyncByteStream):
    """A body that records whether anyone read it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.read = chunks, 0

    def __iter__(self) -> Iterator[bytes]:
        for c in self.chunks:
            self.read += 1
            yield c


def client(handler: object, **kwargs: object) -> HttpClient:
    return HttpClient("http://user:s3cret@server.test", transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]


def test_a_content_length_over_the_cap_is_refused_before_reading() -> None:
    body = Watched([b"{}"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(1 << 30)}, stream=body)

    with client(handler, max_response_bytes=1024) as http, pytest.raises(EnvironmentFailure, match="oversized"):
        http.request_json("GET", "/x", what="thing")
    assert body.read == 0


def test_an_endless_body_is_cut_at_the_cap() -> None:
    body = Watched([b" " * 1024] * 1000)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    with client(handler, max_response_bytes=4096) as http, pytest.raises(EnvironmentFailure, match="oversized"):
        http.request_json("GET", "/x", what="thing")
    assert body.read <= 5


def test_json_is_parsed_by_the_bounded_parser() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"a": 1, "a": 2}')

    with client(handler) as http, pytest.raises(MalformedError, match="duplicate key"):
        http.request_json("GET", "/x", what="thing")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, VerificationError),
        (404, NotFoundError),
        (409, ConflictError),
        (400, MalformedError),
        (500, EnvironmentFailure),
    ],
)
def test_statuses_become_signery_errors_with_the_servers_message(status: int, error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        doc = {"error": {"reason": "malformed", "message": "the server says why", "subject": "demo"}}
        return httpx.Response(status, json=doc)

    with client(handler) as http, pytest.raises(error) as caught:
        http.request_json("GET", "/api/x", what="demo@1.0.0")
    text = str(caught.value)
    assert "the server says why" in text and f"HTTP {status}" in text
    assert "http://server.test/api/x" in text and "s3cret" not in text


def test_transport_failures_are_environment_failures_without_credentials() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = HttpClient(f"http://user:s3cret@127.0.0.1:{port}")
    with http, pytest.raises(EnvironmentFailure, match="unreachable") as caught:
        http.request_json("GET", "/x", what="thing")
    assert caught.value.exit_code == 3
    assert "s3cret" not in str(caught.value) and "s3cret" not in (caught.value.subject or "")
    assert "s3cret" not in repr(http)


def test_only_http_urls() -> None:
    with pytest.raises(UsageError):
        HttpClient("file:///etc/passwd")
    assert redact_url("https://u:p@h.example:8443/a?q=1") == "https://h.example:8443/a?q=1"


def test_download_checks_while_streaming_and_reports_progress(tmp_path: Path) -> None:
    data = b"x" * (3 << 20)
    sha = hashlib.sha256(data).hexdigest()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/liar":
            return httpx.Response(200, headers={"content-length": str(1 << 30)}, stream=Watched([data]))
        return httpx.Response(200, stream=Watched([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]))

    seen: list[int] = []
    with client(handler) as http:
        path = http.download("/ok", tmp_path, what="pkg", sha256=sha, size=len(data), progress=seen.append)
        assert path.read_bytes() == data and seen == [1 << 20] * 3
        path.unlink()
        with pytest.raises(TamperedError, match="more than"):
            http.download("/liar", tmp_path, what="pkg", sha256=sha, size=len(data))
        with pytest.raises(TamperedError, match="SHA-256"):
            http.download("/ok", tmp_path, what="pkg", sha256="0" * 64, size=len(data))
    assert list(tmp_path.iterdir()) == []


def test_upload_streams_and_reports_progress(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"y" * ((2 << 20) + 5))
    received: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = 0
        for chunk in request.stream:  # type: ignore[union-attr]
            n += len(chunk)
        received.append(n)
        return httpx.Response(201, json={"size": n})

    seen: list[int] = []
    with client(handler) as http:
        sent = http.upload("POST", "/up", src, what="upload", progress=seen.append)
    assert sent.reply == {"size": src.stat().st_size} and received == [src.stat().st_size]
    assert sent.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert seen == [1 << 20, 1 << 20, 5]
