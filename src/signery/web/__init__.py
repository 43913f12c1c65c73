"""What both HTTP servers (the signing service and the registry) share: the request-body limit.

Like ``service/`` and ``registry/``, this package may import the ASGI frameworks; the library may not.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_TOO_LARGE = b'{"error":{"reason":"malformed","message":"request body too large","subject":null}}'
_BAD_LENGTH = b'{"error":{"reason":"malformed","message":"bad Content-Length","subject":null}}'


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (reason ``malformed``): by Content-Length before the
    application runs, and while the body streams in (chunked uploads). Paths in ``exempt`` (endpoints that
    stream to disk under limits of their own) pass untouched; paths in ``limits`` (endpoints that stream large
    artifacts to disk) have the limit given there instead. A Content-Length that is not a number is 400.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        exempt: frozenset[str] = frozenset(),
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await _reply(send, 400, _BAD_LENGTH)
                    return
                if int(value) > limit:
                    await _reply(send, 413, _TOO_LARGE)
                    return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now; the app then sees a disconnected client and whatever it sends is dropped.
                    refused = True
                    await _reply(send, 413, _TOO_LARGE)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded_send)


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BodyLimit"]
