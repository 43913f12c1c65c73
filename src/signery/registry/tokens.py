"""Publisher tokens: random secrets shown once, stored only as a hash, compared in constant time, revocable, and
optionally limited to package-name patterns.

Token format: ``sgy_<id>_<secret>``. The id finds the row; the secret's SHA-256 is compared with
:func:`hmac.compare_digest`. The secret has 256 bits of entropy, so a fast hash is enough (no password KDF needed).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from ..errors import MalformedError, PolicyViolationError, Reason, VerificationError

TOKEN_PREFIX = "sgy_"  # noqa: S105 - a marker that makes leaked tokens easy to scan for, not a secret
MAX_TOKEN_LENGTH = 256  # a real token is ~70 characters; anything longer is not ours
MAX_SCOPES = 32  # patterns per token; a scope list is meant to be read by a person
_TOKEN = re.compile(r"sgy_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_SCOPE = re.compile(r"[A-Za-z0-9._*?\[\]-]{1,128}")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


class AuthenticationError(VerificationError):
    """No token, an unknown or revoked token, or a wrong secret (HTTP 401). The message never says which."""

    default_reason = Reason.POLICY_VIOLATION


def new_token() -> tuple[str, str, str]:
    """A fresh token: ``(token_id, secret_hash, token_text)``. Only ``token_text`` is secret; show it once."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, hash_secret(secret), f"{TOKEN_PREFIX}{token_id}_{secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(text: str) -> tuple[str, str]:
    """``(token_id, secret)`` of a token string; raises :class:`AuthenticationError` when it is not one."""
    if not isinstance(text, str) or len(text) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("invalid token")
    m = _TOKEN.fullmatch(text.strip())
    if m is None:
        raise AuthenticationError("invalid token")
    return m.group(1), m.group(2)


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not _TOKEN_NAME.fullmatch(name):
        raise MalformedError(f"invalid token name {name!r}", subject=str(name)[:128])
    return name


def check_scopes(scopes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    scopes = tuple(scopes) or ("*",)
    if len(scopes) > MAX_SCOPES:
        raise MalformedError(f"at most {MAX_SCOPES} scopes per token", subject="scope")
    for s in scopes:
        if not _SCOPE.fullmatch(s):
            raise MalformedError(f"invalid scope pattern {s!r}", subject=s[:128])
    return scopes


@dataclass(frozen=True)
class Publisher:
    """Who is publishing: the token's name and the package-name patterns it may publish."""

    name: str
    scopes: tuple[str, ...]

    def may_publish(self, package_name: str) -> bool:
        key = package_name.lower()
        return any(fnmatch.fnmatchcase(key, pattern.lower()) for pattern in self.scopes)

    def check_may_publish(self, package_name: str) -> None:
        if not self.may_publish(package_name):
            raise PolicyViolationError(
                f"token {self.name!r} may not publish {package_name!r} (scopes: {', '.join(self.scopes)})",
                subject=package_name,
            )
