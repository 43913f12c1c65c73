"""A lean ASGI front for ``POST /v1/keys/{name}/sign``, the one route that runs thousands of times a second.

FastAPI's middleware stack, routing and dependency solving cost several times what signing an Ed25519 digest and
auditing it do. This front answers well-formed sign requests itself, with the very functions the FastAPI route uses
(:func:`~signery.service.deps.authenticate_request`, :func:`~signery.service.keys.signing.sign_document`,
:func:`~signery.service.errors.render`): the same authentication, rate limit, scope check, audit and errors. Anything
else it hands, untouched, to the FastAPI application: other routes and methods, bodies that are not
``application/json`` or lack a ``Content-Length`` within the limit, and bodies that do not validate (the buffered body
is replayed, so FastAPI answers exactly as it would have).

balenaSign's small signatures, ``POST /balena/cert/sign`` and ``/balena/gpg/sign`` (a build makes one for every GRUB
file and kernel it signs), are answered here the same way, with the functions their FastAPI routes use
(:func:`~signery.service.routes.balena.cert_sign_document`, :func:`~signery.service.routes.balena.gpg_sign_document`):
the same authentication, rate limit, scope check, audit and errors. Only bodies the route would accept as they are
come this way: a ``/gpg/sign`` payload larger than the body limit, or anything unusual in a body, goes to FastAPI
(which spools large payloads to disk).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._internal.names import is_name, name_pattern
from ..errors import SigneryError
from .apikeys import Caller
from .deps import action_of, authenticate_request
from .errors import render
from .keys.signing import sign_document
from .routes import balena as balena_routes
from .schemas import SignRequest
from .state import ServiceState

_SIGN_PATH = re.compile(rf"/v1/keys/({name_pattern(anchored=False)})/sign")
_JSON = b"application/json"
_GPG_KEY_ID = re.compile(r"[a-fA-F0-9]{1,42}")  # the route's key_id check (routes/balena.py, gpg_sign)
Document = Callable[[ServiceState, Caller, str], Awaitable[bytes]]  # (state, caller, action) -> reply


def _cert_sign(body: bytes) -> Document | None:
    """``POST /balena/cert/sign``: the body as the route's model takes it, or ``None`` (FastAPI answers)."""
    try:
        req = balena_routes.CertSignRequest.model_validate_json(body)
    except ValidationError:
        return None

    def doc(state: ServiceState, caller: Caller, action: str) -> Awaitable[bytes]:
        return balena_routes.cert_sign_document(state, caller, req.cert_id, req.digest, action=action)

    return doc


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a field given twice")  # the spooling route refuses it: let it say so
    return found


def _gpg_sign(body: bytes) -> Document | None:
    """``POST /balena/gpg/sign`` with exactly ``key_id`` and a standard base64 ``payload``, or ``None``."""
    try:
        fields = json.loads(body, object_pairs_hook=_pairs)
    except ValueError:
        return None
    if not isinstance(fields, dict) or fields.keys() != {"key_id", "payload"}:
        return None
    key_id, text = fields["key_id"], fields["payload"]
    if not isinstance(key_id, str) or not _GPG_KEY_ID.fullmatch(key_id) or not isinstance(text, str):
        return None
    try:
        payload = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return None

    def doc(state: ServiceState, caller: Caller, action: str) -> Awaitable[bytes]:
        return balena_routes.gpg_sign_document(state, caller, key_id, payload, action=action)

    return doc


_BALENA: dict[str, Callable[[bytes], Document | None]] = {
    "/balena/cert/sign": _cert_sign,
    "/balena/gpg/sign": _gpg_sign,
}


class SignFastPath:
    """Serve well-formed ``POST /v1/keys/{name}/sign`` requests directly; pass everything else to ``app``."""

    def __init__(self, app: ASGIApp, *, state: ServiceState, limit: int) -> None:
        self.app, self.state, self.limit = app, state, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        balena = _BALENA.get(path)
        match = _SIGN_PATH.fullmatch(path) if balena is None else None
        name = match.group(1) if match is not None else None
        if balena is None and (name is None or not is_name(name)):
            await self.app(scope, receive, send)
            return
        length, json_body, token = -1, False, None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = int(value) if value.isdigit() and len(value) < 10 else -1
            elif key == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == _JSON
            elif key == b"x-api-key" and token is None:
                token = value.decode("latin-1")
        if not json_body or not 0 <= length <= self.limit:
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive, self.limit)
        document: Document | None = None
        request: SignRequest | None = None
        if not complete:
            pass
        elif balena is not None:
            document = balena(body)
        else:
            try:
                request = SignRequest.model_validate_json(body)
            except ValidationError:
                request = None
        if request is None and document is None:
            await self.app(scope, _replay(body, receive), send)
            return
        action = action_of("POST", path)
        client = scope.get("client")
        try:
            caller = await authenticate_request(self.state, token, client=client[0] if client else "-", action=action)
            if document is not None:
                doc = await document(self.state, caller, action)
            else:
                assert request is not None and name is not None
                doc = await sign_document(self.state, name, request, caller, action=action)
        except SigneryError as err:
            response = await run_in_threadpool(render, self.state.db, err)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", _JSON), (b"content-length", str(len(doc)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": doc})


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body and whether it is complete; stops reading past ``limit`` or at a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), size <= limit
    return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then whatever the connection sends next."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
