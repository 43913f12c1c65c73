"""Errors of the registry that both the server and the client raise (kept free of server-only imports)."""

from __future__ import annotations

from ..errors import MalformedError, Reason, UsageError


class NotFoundError(MalformedError):
    """No such package, version, signature, upload or token (HTTP 404)."""


class ConflictError(UsageError):
    """name@version already exists with different bytes, or a signature file name is taken (HTTP 409)."""

    default_reason = Reason.POLICY_VIOLATION
