"""Map signery errors to HTTP statuses and JSON bodies ``{"error": {"reason", "message", "subject"}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConflictError,
    EnvironmentFailure,
    MalformedError,
    NotFoundError,
    PolicyViolationError,
    Reason,
    SigneryError,
    VerificationError,
)
from .blobs import BlobTooLargeError, CorruptBlobError
from .tokens import AuthenticationError


def status_for(err: SigneryError) -> int:
    # Most specific first: several of these are subclasses of one another.
    table: tuple[tuple[type[SigneryError], int], ...] = (
        (AuthenticationError, 401),
        (CorruptBlobError, 500),
        (NotFoundError, 404),
        (ConflictError, 409),
        (BlobTooLargeError, 413),
        (PolicyViolationError, 403),
        (VerificationError, 422),
        (MalformedError, 400),
        (EnvironmentFailure, 503),
    )
    for cls, status in table:
        if isinstance(err, cls):
            return 422 if status == 403 and err.reason == Reason.UNSIGNED else status
    return 500


def error_response(status: int, *, reason: str, message: str, subject: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"reason": reason, "message": message, "subject": subject}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SigneryError)
    async def _signery(_request: Request, exc: SigneryError) -> JSONResponse:
        return error_response(status_for(exc), reason=exc.reason.value, message=exc.message, subject=exc.subject)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, reason=Reason.MALFORMED.value, message=str(first.get("msg", exc)), subject=where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = Reason.MALFORMED.value
        return error_response(exc.status_code, reason=reason, message=str(exc.detail), subject=None)
