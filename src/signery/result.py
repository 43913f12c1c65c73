"""Verification results: what every format's ``verify`` returns.

A result lists every signature found with its own status, and derives the verdict from them and a threshold, so
a caller always learns *why* (``reason``) and never gets a bare bool. :meth:`VerificationResult.raise_for_status`
turns a failing result into a :class:`~signery.errors.VerificationError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._internal.records import fields_json
from .errors import Reason, VerificationError

VALID = "valid"

# When several signatures fail for different reasons, the verdict names the most telling one: evidence of an
# attack or of a broken package beats "we do not know this key".
REASON_PRIORITY: tuple[Reason, ...] = (
    Reason.TAMPERED,
    Reason.UNSAFE_ARCHIVE,
    Reason.BAD_SIGNATURE,
    Reason.REVOKED_KEY,
    Reason.EXPIRED_KEY,
    Reason.POLICY_VIOLATION,
    Reason.MALFORMED,
    Reason.UNKNOWN_KEY,
)


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome for one signature.

    Attributes:
        format: ``native``, ``dify``, ``openpgp``, ``ocm``...
        key_id: the signing key's id (SPKI SHA-256, or an OpenPGP fingerprint), when known.
        key_name: the trust-store name of that key, when trusted.
        reason: ``None`` when the signature is valid and trusted; otherwise why not.
        detail: a sentence for people (e.g. which file differs).
        subject: what is at fault, when one thing is (a file name, a key id).
    """

    format: str
    key_id: str | None
    reason: Reason | None = None
    key_name: str | None = None
    detail: str | None = None
    subject: str | None = None
    signed_at: datetime | None = None
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.reason is None

    @property
    def status(self) -> str:
        return VALID if self.reason is None else self.reason.value

    def to_dict(self) -> dict[str, Any]:
        signed_at = self.signed_at.isoformat().replace("+00:00", "Z") if self.signed_at else None
        return fields_json(self, "format key_id key_name status detail subject signed_at claims", signed_at=signed_at)


@dataclass(frozen=True)
class VerificationResult:
    """All signatures found on one subject and the verdict for a threshold of distinct trusted keys."""

    subject: str
    signatures: tuple[SignatureCheck, ...]
    threshold: int = 1

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1: a threshold of 0 would trust nothing and pass everything")

    @property
    def valid_key_ids(self) -> frozenset[str]:
        return frozenset(s.key_id for s in self.signatures if s.valid and s.key_id)

    @property
    def verified(self) -> bool:
        return len(self.valid_key_ids) >= self.threshold

    @property
    def reason(self) -> Reason | None:
        if self.verified:
            return None
        if not self.signatures:
            return Reason.UNSIGNED
        failing = {s.reason for s in self.signatures if s.reason is not None}
        for r in REASON_PRIORITY:
            if r in failing:
                return r
        if failing:
            return sorted(failing, key=lambda r: r.value)[0]
        return Reason.POLICY_VIOLATION  # all valid, but fewer distinct keys than the threshold

    @property
    def message(self) -> str:
        if self.verified:
            return f"verified by {len(self.valid_key_ids)} trusted key(s)"
        if not self.signatures:
            return f"{self.subject} carries no signature"
        if self.reason is Reason.POLICY_VIOLATION and all(s.valid for s in self.signatures):
            return f"{len(self.valid_key_ids)} distinct trusted key(s) signed, threshold is {self.threshold}"
        first = next(s for s in self.signatures if s.reason is self.reason)
        return first.detail or self.reason.value if self.reason else ""

    @property
    def fault(self) -> str | None:
        """The file or key at fault for the verdict, when one is."""
        if self.verified:
            return None
        for s in self.signatures:
            if s.reason is self.reason:
                return s.subject
        return None

    def raise_for_status(self) -> VerificationResult:
        if not self.verified:
            raise VerificationError(self.message, reason=self.reason, subject=self.fault)
        return self

    def merged(self, other: VerificationResult) -> VerificationResult:
        """Combine the signatures of two formats found on the same subject."""
        return VerificationResult(self.subject, self.signatures + other.signatures, threshold=self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return fields_json(self, "subject verified reason message threshold signatures")
