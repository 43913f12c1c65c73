"""How signery errors become HTTP responses, and how denials reach the audit log.

Every error body is ``{"error": {"reason", "message", "subject"}}``. Status codes: 400 unusable input, 401 no valid
API key, 403 a valid key without the scope, 404 unknown key, 409 exists already, 413 body too large, 422 refused
(policy, bad signature), 429 rate limited, 503 environment (database, master key).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import (
    ConfigError,
    ConflictError,
    EnvironmentFailure,
    MalformedError,
    NotFoundError,
    Reason,
    SigneryError,
    VerificationError,
)
from .apikeys import Caller
from .audit import AuditEvent, record
from .storage import Database


class DeniedError(SigneryError):
    """A request refused before any work: 401 (who are you?) or 403 (not allowed)."""

    default_reason = Reason.POLICY_VIOLATION

    def __init__(self, message: str, *, status: int, caller: str, action: str, key_name: str | None = None) -> None:
        super().__init__(message, subject=key_name)
        self.status, self.caller, self.action, self.key_name = status, caller, action, key_name


def denial(caller: Caller, *, needs: str, action: str, key_name: str | None = None) -> DeniedError:
    """403: ``caller`` is authenticated but lacks the scope ``needs``."""
    return DeniedError(
        f"API key {caller.name} lacks the {needs} scope",
        status=403,
        caller=caller.name,
        action=action,
        key_name=key_name,
    )


class RateLimitedError(SigneryError):
    default_reason = Reason.POLICY_VIOLATION

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def status_of(err: SigneryError) -> int:
    if isinstance(err, NotFoundError):
        return 404
    if isinstance(err, ConflictError):
        return 409
    if isinstance(err, VerificationError):
        return 422
    if isinstance(err, ConfigError | EnvironmentFailure):
        return 503
    if isinstance(err, MalformedError):
        return 400
    return 400


def error_body(err: SigneryError) -> dict[str, dict[str, str | None]]:
    return {"error": err.to_dict()}


def render(db: Database, exc: SigneryError) -> JSONResponse:
    """The response for ``exc``; a denial is written to the audit log first (503 if it cannot be).

    Blocking (a denial writes to the database): call it from a worker thread, as Starlette does for handlers.
    """
    if isinstance(exc, DeniedError):
        try:
            record(
                db,
                AuditEvent(
                    caller=exc.caller,
                    action=exc.action,
                    result=f"denied:{exc.status}",
                    key_name=exc.key_name,
                    detail=exc.message,
                ),
            )
        except SigneryError as err:
            return JSONResponse(error_body(err), status_code=503)
        headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else None
        return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)
    if isinstance(exc, RateLimitedError):
        return JSONResponse(error_body(exc), status_code=429, headers={"Retry-After": str(exc.retry_after)})
    return JSONResponse(error_body(exc), status_code=status_of(exc))


def install_handlers(app: FastAPI) -> None:
    def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SigneryError)
        return render(request.app.state.db, exc)

    app.add_exception_handler(SigneryError, on_error)
