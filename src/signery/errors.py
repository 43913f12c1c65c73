"""One exception tree for all of signery.

Every failure carries a stable :class:`Reason` code, so scripts and servers can act on *why* something was
refused rather than parse a message. The library raises; only the CLI and the servers render errors and choose
exit codes or HTTP statuses (see :attr:`SigneryError.exit_code`).

Branches:

- :class:`VerificationError` - the input is untrusted or bad: refused (exit 1).
- :class:`MalformedError` / :class:`UsageError` - the input cannot be used at all (exit 2); among them
  :class:`NotFoundError` (HTTP 404) and :class:`ConflictError` (HTTP 409), which both servers and their clients raise.
- :class:`ConfigError` / :class:`EnvironmentFailure` - the environment is wrong: a setting, a key store, a
  database, the network (exit 3).
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Stable reason codes. Their string values are part of the public interface (JSON, HTTP, exit paths)."""

    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    TAMPERED = "tampered"
    UNSAFE_ARCHIVE = "unsafe-archive"
    EXPIRED_KEY = "expired-key"
    REVOKED_KEY = "revoked-key"
    POLICY_VIOLATION = "policy-violation"
    MALFORMED = "malformed"
    CONFIG_ERROR = "config-error"


class SigneryError(Exception):
    """Root of every error signery raises on purpose.

    Args:
        message: what went wrong, for a person.
        reason: the stable reason code.
        subject: what is at fault, when one thing is: a file, an archive entry, a key id, a setting.
        hint: what the user can do about it.
    """

    default_reason: Reason = Reason.MALFORMED
    exit_code: int = 2

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        subject: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason if reason is not None else self.default_reason
        self.subject = subject
        self.hint = hint

    def diagnostics(self) -> str:
        """A human-readable, possibly multi-line explanation."""
        text = f"{self.reason.value}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, str | None]:
        return {"reason": self.reason.value, "message": self.message, "subject": self.subject}


class VerificationError(SigneryError):
    """The input was examined and refused: unsigned, untrusted, tampered, unsafe or against policy."""

    default_reason = Reason.BAD_SIGNATURE
    exit_code = 1


class UnsafeArchiveError(VerificationError):
    """An archive is ambiguous or dangerous to extract (traversal, links, duplicates, bombs...)."""

    default_reason = Reason.UNSAFE_ARCHIVE


class TamperedError(VerificationError):
    """The signed contents and the contents at hand differ; ``subject`` names the file."""

    default_reason = Reason.TAMPERED


class PolicyViolationError(VerificationError):
    """A policy refused an otherwise well-formed input."""

    default_reason = Reason.POLICY_VIOLATION


class MalformedError(SigneryError):
    """Input that cannot be parsed or used: not a key, not a zip, not JSON, a bad descriptor..."""

    default_reason = Reason.MALFORMED
    exit_code = 2


class UsageError(MalformedError):
    """The caller asked for something that cannot be done as asked (a file exists, options conflict)."""


class NotFoundError(UsageError):
    """What a request names does not exist: a key or key version, an API key, a package, a version, an upload, a
    token. Servers answer HTTP 404. The reason is ``malformed`` (the request names nothing), except for signing keys,
    which are ``unknown-key`` as everywhere else in signery."""


class ConflictError(UsageError):
    """What a request would create exists already, or exists with other content: a key or API key name that is
    taken, a published ``name@version`` (immutable), a signature file name. Servers answer HTTP 409."""

    default_reason = Reason.POLICY_VIOLATION


class ConfigError(SigneryError):
    """A setting is missing or wrong: a configured key file that cannot be read, a bad policy file."""

    default_reason = Reason.CONFIG_ERROR
    exit_code = 3


class EnvironmentFailure(SigneryError):
    """Something outside the input failed: the key store, a database, the network, an external tool."""

    default_reason = Reason.CONFIG_ERROR
    exit_code = 3


__all__ = [
    "ConfigError",
    "ConflictError",
    "EnvironmentFailure",
    "MalformedError",
    "NotFoundError",
    "PolicyViolationError",
    "Reason",
    "SigneryError",
    "TamperedError",
    "UnsafeArchiveError",
    "UsageError",
    "VerificationError",
]
