"""API keys: names, scopes, expiry, revocation; stored as hashes and compared in constant time.

A token looks like ``sgy_<id>_<secret>``. The id finds the row; only SHA-256 of the secret is stored (the secret has
256 bits of entropy, so a slow password hash would add nothing but latency to every request).

Scopes: ``admin`` (everything), ``read`` (list keys, verify), ``sign:PATTERN`` (sign and verify with the keys whose
names match the shell-style PATTERN, e.g. ``sign:release-*``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .._internal.names import check_name
from ..errors import ConflictError, MalformedError, NotFoundError, UsageError
from .audit import AuditEvent, append, utc_now
from .storage import ApiKeyRow

TOKEN_PREFIX = "sgy"  # noqa: S105 - a label, not a secret
MAX_SCOPES = 32  # a key with more scopes than this is a policy document, not an API key
MAX_TOKEN_CHARS = 128  # real tokens are ~70 characters; longer headers are refused before any lookup
_SCOPE_PATTERN = re.compile(r"^sign:[A-Za-z0-9._*?-]{1,64}$")
_TOKEN = re.compile(r"^sgy_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def check_scope(scope: str) -> str:
    if scope in ("admin", "read") or _SCOPE_PATTERN.fullmatch(scope):
        return scope
    raise UsageError(f"unknown scope {scope!r}: use admin, read or sign:PATTERN", subject=scope)


@dataclass(frozen=True)
class Caller:
    """Who is calling, once the API key checked out."""

    api_key_id: str
    name: str
    scopes: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def may_read(self) -> bool:
        return self.is_admin or "read" in self.scopes or any(s.startswith("sign:") for s in self.scopes)

    def may_sign(self, key_name: str) -> bool:
        if self.is_admin:
            return True
        return any(s.startswith("sign:") and fnmatch.fnmatchcase(key_name, s[5:]) for s in self.scopes)

    def may_verify(self, key_name: str) -> bool:
        return self.is_admin or "read" in self.scopes or self.may_sign(key_name)


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: str
    expires_at: str | None
    revoked_at: str | None


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse_time(value: str, *, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} {value!r} is not an ISO 8601 time", subject=what) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        scopes=tuple(json.loads(row.scopes)),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def create_api_key(
    session: Session, *, name: str, scopes: list[str], expires_at: datetime | None = None, caller: str
) -> tuple[ApiKeyInfo, str]:
    """Create an API key; returns its description and the token (shown once, never stored)."""
    check_name(name, what="API key name")
    if not scopes:
        raise UsageError("an API key needs at least one scope", subject=name)
    if len(scopes) > MAX_SCOPES:
        raise UsageError(f"at most {MAX_SCOPES} scopes", subject=name)
    clean = sorted({check_scope(s) for s in scopes})
    if session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name)) is not None:
        raise ConflictError(f"an API key named {name} exists", subject=name)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    expires = None
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        expires = expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = ApiKeyRow(
        id=key_id,
        name=name,
        secret_hash=_hash_secret(secret),
        scopes=json.dumps(clean),
        created_at=utc_now(),
        expires_at=expires,
        revoked_at=None,
    )
    session.add(row)
    append(
        session,
        [AuditEvent(caller=caller, action="api-key.create", result="ok", detail=f"{name} {' '.join(clean)}")],
    )
    return _info(row), f"{TOKEN_PREFIX}_{key_id}_{secret}"


def list_api_keys(session: Session) -> list[ApiKeyInfo]:
    return [_info(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))]


def revoke_api_key(session: Session, *, name: str, caller: str) -> ApiKeyInfo:
    check_name(name, what="API key name")
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
    if row is None:
        raise NotFoundError(f"no API key named {name}", subject=name)
    if row.revoked_at is None:
        row.revoked_at = utc_now()
    append(session, [AuditEvent(caller=caller, action="api-key.revoke", result="ok", detail=name)])
    return _info(row)


def authenticate(session: Session, token: str) -> Caller | None:
    """The caller a token belongs to, or ``None`` for a wrong, unknown, expired or revoked token."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    m = _TOKEN.fullmatch(token)
    if m is None:
        return None
    row = session.get(ApiKeyRow, m.group(1))
    if row is None:
        # Compare anyway so unknown and wrong keys take the same time.
        hmac.compare_digest(_hash_secret(m.group(2)), "0" * 64)
        return None
    if not hmac.compare_digest(_hash_secret(m.group(2)), row.secret_hash):
        return None
    if row.revoked_at is not None:
        return None
    if row.expires_at is not None and _parse_time(row.expires_at, what="expiry") <= datetime.now(UTC):
        return None
    return Caller(api_key_id=row.id, name=row.name, scopes=tuple(json.loads(row.scopes)))


def parse_expiry(value: str | None) -> datetime | None:
    """``--expires`` values: an ISO time, or a duration like ``30d`` / ``12h``."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d{1,5})([dh])", value)
    if m:
        from datetime import timedelta

        n = int(m.group(1))
        return datetime.now(UTC) + (timedelta(days=n) if m.group(2) == "d" else timedelta(hours=n))
    try:
        return _parse_time(value, what="expiry")
    except UsageError:
        raise MalformedError(
            f"expiry {value!r} is neither an ISO time nor a duration like 30d", subject=value
        ) from None


def first_admin_key(session: Session, *, name: str = "admin", caller: str = "server-init") -> str | None:
    """Create the first admin API key when the database has none; ``None`` when keys exist already."""
    if session.scalar(select(ApiKeyRow.id).limit(1)) is not None:
        return None
    _, token = create_api_key(session, name=name, scopes=["admin"], caller=caller)
    return token
