"""Zero-copy file responses for uvicorn: the ASGI ``http.response.pathsend`` extension over ``os.sendfile``.

uvicorn does not implement ``http.response.pathsend``. :class:`SendfileHttpProtocol` is its httptools protocol
that does, on plain TCP (over TLS the extension is not offered, and Starlette's ``FileResponse`` reads the file in
chunks as before). A download then costs the kernel one copy (page cache to socket) and Python a few system calls,
instead of a read into a Python buffer and a write out of it.

The bytes go straight to the connection's socket, after the status line and headers uvicorn wrote through the
transport; when the transport still buffers anything (a slow client's previous response), the file is written
through the transport instead, so nothing is ever sent out of order. Waiting for the socket to become writable
uses a duplicate of its descriptor, since event loops refuse to watch a descriptor a transport owns.

Use it with ``uvicorn.Config(app, http=SendfileHttpProtocol)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

PATHSEND = "http.response.pathsend"
CORK_FROM = 64 << 10  # responses at least this long go out corked: the headers share the first segment
_CORK = getattr(socket, "TCP_CORK", None)  # Linux
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class SendfileCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, answering ``http.response.pathsend`` with ``os.sendfile``."""

    _corked: Any = None  # the socket, while TCP_CORK is set on it

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind != PATHSEND or not self.response_started or self.response_complete:
            if kind == "http.response.start" and not self.response_started and _long(message):
                self._cork()
            try:
                await super().send(message)
            except BaseException:
                self._uncork()
                raise
            if self._corked is not None and (self.response_complete or self.disconnected):
                self._uncork()
            return
        try:
            await self._pathsend(message)
        finally:
            self._uncork()

    def _cork(self) -> None:
        sock = self.transport.get_extra_info("socket") if _CORK is not None else None
        if sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
        except OSError:
            return
        self._corked = sock

    def _uncork(self) -> None:
        sock, self._corked = self._corked, None
        if sock is not None:
            with contextlib.suppress(OSError):  # the connection is gone
                sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)

    async def _pathsend(self, message: Any) -> None:
        if self.disconnected:
            return
        path = message["path"]
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if self.scope["method"] == "HEAD":
                self.expected_content_length = 0
            elif self.chunked_encoding or size != self.expected_content_length:
                raise RuntimeError("http.response.pathsend needs a Content-Length equal to the file's size")
            elif size:
                await self._sendfile(fd, size)
        finally:
            os.close(fd)
        if self.disconnected:
            return
        self.expected_content_length = 0
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()

    async def _sendfile(self, fd: int, size: int) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is None or self.transport.get_write_buffer_size() or self.flow.write_paused:
            # Something is queued before these bytes: keep the order, through the transport.
            self.transport.write(os.pread(fd, size, 0))
            return
        # A duplicate of the descriptor: the loop may be watched on it, and should the transport close (and its
        # descriptor number be reused) while this waits, the bytes still go to this connection's socket only.
        out = os.dup(sock.fileno())
        offset = 0
        loop = asyncio.get_running_loop()
        try:
            while offset < size:
                try:
                    offset += os.sendfile(out, fd, offset, size - offset) or _short()
                    continue
                except BlockingIOError:
                    pass
                except _GONE:
                    self._gone()
                    return
                ready = loop.create_future()
                loop.add_writer(out, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(out)
                if self.disconnected or self.transport.is_closing():
                    self._gone()
                    return
        finally:
            os.close(out)

    def _gone(self) -> None:
        self.disconnected = True
        self.transport.close()


def _long(message: Any) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-length":
            return value.isdigit() and int(value) >= CORK_FROM
    return False


def _short() -> int:
    raise RuntimeError("the file is shorter than its size while being sent")


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class SendfileHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol offering ``http.response.pathsend`` on plain TCP connections."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.scheme == "http":
            self.scope["extensions"] = {PATHSEND: {}}  # type: ignore[typeddict-unknown-key]

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = SendfileCycle
        super()._start_asgi_task(cycle, app)


__all__ = ["PATHSEND", "SendfileCycle", "SendfileHttpProtocol"]
