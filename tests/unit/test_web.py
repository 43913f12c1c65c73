"""The request-body limit both servers share, driven as an ASGI application directly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from signery.web import BodyLimit


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    app = BodyLimit(_echo, limit=10, exempt=frozenset({"/upload"}))
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert len([m for m in sent if m["type"] == "http.response.start"]) == 1, "exactly one response"
    return status, json.loads(body)


def test_bodies_within_the_limit_pass() -> None:
    assert call("/x", [b"12345", b"67890"], [(b"content-length", b"10")]) == (200, {"size": 10})


def test_declared_or_streamed_excess_is_413_malformed() -> None:
    status, doc = call("/x", [b"x" * 11], [(b"content-length", b"11")])
    assert (status, doc["error"]["reason"]) == (413, "malformed")
    status, doc = call("/x", [b"x" * 6, b"x" * 6], [])  # chunked: no Content-Length, caught while streaming
    assert (status, doc["error"]["reason"]) == (413, "malformed")


def test_a_content_length_that_is_not_a_number_is_400() -> None:
    status, doc = call("/x", [b""], [(b"content-length", b"-1")])
    assert (status, doc["error"]["reason"]) == (400, "malformed")


def test_exempt_paths_stream_past_the_limit() -> None:
    assert call("/upload", [b"x" * 100], [(b"content-length", b"100")]) == (200, {"size": 100})
