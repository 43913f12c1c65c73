"""The lean sign path answers exactly as the FastAPI route does: same statuses, bodies, headers and audit rows.

Each request is sent twice, once through the application as served (lean front first) and once straight to the
FastAPI layer behind it. Ed25519 signatures are deterministic, so whole bodies compare.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from service_kit import Service
from sqlalchemy import func, select
from starlette.types import Receive, Scope, Send

from signery.service.fastpath import SignFastPath
from signery.service.storage import AuditRow

DIGEST = base64.b64encode(hashlib.sha256(b"artifact").digest()).decode()
HEADERS_COMPARED = ("content-type", "www-authenticate", "retry-after")


def _chunks() -> Iterator[bytes]:
    yield b'{"message": "'
    yield DIGEST.encode() + b'"}'


# (label, path, request keyword arguments; "TOKEN" / "READER" are replaced by API keys)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("message", "/v1/keys/ed/sign", {"json": {"message": DIGEST}}),
    ("batch with a bad item", "/v1/keys/ed/sign", {"json": {"batch": [{"message": DIGEST}, {"message": "%%"}]}}),
    ("ed25519 digest", "/v1/keys/ed/sign", {"json": {"digest": DIGEST}}),
    ("pinned version", "/v1/keys/ed/sign", {"json": {"message": DIGEST, "version": 1}}),
    ("missing version", "/v1/keys/ed/sign", {"json": {"message": DIGEST, "version": 7}}),
    ("unknown key", "/v1/keys/nope/sign", {"json": {"message": DIGEST}}),
    ("dot name", "/v1/keys/./sign", {"json": {"message": DIGEST}}),
    ("long name", "/v1/keys/" + "a" * 65 + "/sign", {"json": {"message": DIGEST}}),
    ("bad base64", "/v1/keys/ed/sign", {"json": {"message": "not base64!"}}),
    ("extra field", "/v1/keys/ed/sign", {"json": {"message": DIGEST, "evil": 1}}),
    ("wrong type", "/v1/keys/ed/sign", {"json": {"message": 5}}),
    ("both digest and batch", "/v1/keys/ed/sign", {"json": {"message": DIGEST, "batch": [{"message": DIGEST}]}}),
    ("empty batch", "/v1/keys/ed/sign", {"json": {"batch": []}}),
    ("nothing to sign", "/v1/keys/ed/sign", {"json": {}}),
    ("invalid json", "/v1/keys/ed/sign", {"content": b"{", "headers": {"content-type": "application/json"}}),
    ("empty body", "/v1/keys/ed/sign", {"content": b"", "headers": {"content-type": "application/json"}}),
    ("text/plain", "/v1/keys/ed/sign", {"content": b'{"message":"' + DIGEST.encode() + b'"}'}),
    (
        "charset",
        "/v1/keys/ed/sign",
        {"content": b'{"message":"x"}', "headers": {"content-type": "application/json; charset=utf-8"}},
    ),
    ("chunked", "/v1/keys/ed/sign", {"content": _chunks, "headers": {"content-type": "application/json"}}),
    ("too large", "/v1/keys/ed/sign", {"json": {"message": "A" * 2_000_000}}),
    ("no key", "/v1/keys/ed/sign", {"json": {"message": DIGEST}, "token": None}),
    ("bad key", "/v1/keys/ed/sign", {"json": {"message": DIGEST}, "token": "sgy_0123456789abcdef_" + "A" * 43}),
    ("no key, invalid body", "/v1/keys/ed/sign", {"json": {"message": 5}, "token": None}),
    ("reader may not sign", "/v1/keys/ed/sign", {"json": {"message": DIGEST}, "token": "READER"}),
    ("trailing slash", "/v1/keys/ed/sign/", {"json": {"message": DIGEST}}),
]


def _bare(app: FastAPI) -> Any:
    """The FastAPI application without the lean front."""

    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return bare


def _send(
    client: TestClient, path: str, kw: dict[str, Any], tokens: dict[str, str]
) -> tuple[int, object, dict[str, str]]:
    kw = dict(kw)
    token = kw.pop("token", "TOKEN")
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["X-API-Key"] = tokens.get(token, token)
    if callable(kw.get("content")):
        kw["content"] = kw["content"]()
    r = client.post(path, headers=headers, follow_redirects=False, **kw)
    try:
        body: object = r.json()
    except ValueError:
        body = r.content
    return r.status_code, body, {h: r.headers[h] for h in HEADERS_COMPARED if h in r.headers}


@pytest.mark.parametrize(("label", "path", "kw"), CASES, ids=[c[0] for c in CASES])
def test_lean_path_answers_as_fastapi_does(service: Service, label: str, path: str, kw: dict[str, Any]) -> None:
    svc = service
    assert svc.client.post("/v1/keys", json={"name": "ed", "type": "ed25519"}, headers=svc.h(svc.admin)).status_code
    tokens = {"TOKEN": svc.admin, "READER": svc.token("reader", "read")}
    with TestClient(_bare(svc.app)) as bare:
        rows_before = _rows(svc)
        lean = _send(svc.client, path, kw, tokens)
        rows_lean = _rows(svc) - rows_before
        plain = _send(bare, path, kw, tokens)
        rows_plain = _rows(svc) - rows_before - rows_lean
    assert lean == plain, label
    assert rows_lean == rows_plain, f"{label}: the two paths audit differently"


def _rows(svc: Service) -> int:
    with svc.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditRow)) or 0)


def test_well_formed_requests_never_reach_fastapi(sqlite_service: Service) -> None:
    svc = sqlite_service
    svc.client.post("/v1/keys", json={"name": "ed", "type": "ed25519"}, headers=svc.h(svc.admin))
    reached: list[str] = []

    async def behind(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await FastAPI.__call__(svc.app, scope, receive, send)

    front = SignFastPath(behind, state=svc.app.state.service, limit=1 << 20)
    with TestClient(front) as client:
        r = client.post("/v1/keys/ed/sign", json={"message": DIGEST}, headers=svc.h(svc.admin))
        assert r.status_code == 200 and r.json()["version"] == 1
        assert reached == []
        assert client.post("/v1/keys/ed/sign", json={"message": 5}, headers=svc.h(svc.admin)).status_code == 422
        assert reached == ["/v1/keys/ed/sign"]
