"""A lean ASGI front for ``POST /v1/keys/{name}/sign``, the one route that runs thousands of times a second.

FastAPI's middleware stack, routing and dependency solving cost several times what signing an Ed25519 digest and
auditing it do. This front answers well-formed sign requests itself, with the very functions the FastAPI route uses
(:func:`~signery.service.deps.authenticate_request`, :func:`~signery.service.keys.signing.sign_document`,
:func:`~signery.service.errors.render`): the same authentication, rate limit, scope check, audit and errors. Anything
else it hands, untouched, to the FastAPI application: other routes and methods, bodies that are not
``application/json`` or lack a ``Content-Length`` within the limit, and bodies that do not validate (the buffered body
is replayed, so FastAPI answers exactly as it would have).
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._internal.names import is_name, name_pattern
from ..errors import SigneryError
from .deps import action_of, authenticate_request
from .errors import render
from .keys.signing import sign_document
from .schemas import SignRequest
from .state import ServiceState

_SIGN_PATH = re.compile(rf"/v1/keys/({name_pattern(anchored=False)})/sign")
_JSON = b"application/json"


class SignFastPath:
    """Serve well-formed ``POST /v1/keys/{name}/sign`` requests directly; pass everything else to ``app``."""

    def __init__(self, app: ASGIApp, *, state: ServiceState, limit: int) -> None:
        self.app, self.state, self.limit = app, state, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _SIGN_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        name = match.group(1) if match is not None else None
        if name is None or not is_name(name):
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
        try:
            request = SignRequest.model_validate_json(body) if complete else None
        except ValidationError:
            request = None
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        action = action_of("POST", scope["path"])
        client = scope.get("client")
        try:
            caller = await authenticate_request(self.state, token, client=client[0] if client else "-", action=action)
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
