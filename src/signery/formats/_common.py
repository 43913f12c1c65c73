"""What several formats' verification and reading do alike, written once.

- :func:`reading`: the usage errors for a subject that cannot be read (missing, a directory, unreadable);
- :func:`read_signature_file`: the first bytes of a small signature file, with those errors named for it;
- :func:`pkix_keys`: the trusted PKIX keys with their public keys, skipping damaged entries;
- :func:`standing`: whether a trusted key that made a signature may vouch for it now (revocation, expiry,
  constraints), phrased as the formats that name "the signing key" phrase it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import Reason, SigneryError, UsageError
from ..keys import PublicKey
from ..trust import TrustedKey, TrustSet


@contextmanager
def reading(path: Path, *, directory: str = "") -> Iterator[None]:
    """Turn the OS errors of reading ``path`` into usage errors naming it.

    ``directory`` follows "``path`` is a directory" (``"; OpenPGP signs one file"``).
    """
    try:
        yield
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", subject=str(path)) from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory{directory}", subject=str(path)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", subject=str(path)) from None


def read_signature_file(path: Path, limit: int, *, what: str = "signature file") -> bytes:
    """At most ``limit`` + 1 bytes of the signature file ``path`` (the caller judges a longer one)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist", subject=str(path)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}", subject=str(path)) from None


def read_head(path: Path, size: int) -> bytes | None:
    """The first ``size`` bytes of the file ``path`` (fewer when it is shorter); ``None`` when it cannot be read."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(size)
    except OSError:
        return None


def pkix_keys(trust: TrustSet) -> Iterator[tuple[TrustedKey, PublicKey]]:
    """Each trusted PKIX entry with its public key."""
    for entry in trust.of_kind("pkix"):
        try:
            public = entry.public_key()
        except SigneryError:
            continue  # a damaged trust entry cannot have signed anything; the trust store reports it elsewhere
        yield entry, public


def standing(
    entry: TrustedKey, *, now: datetime, fmt: str, claims: Mapping[str, Any], label: str
) -> tuple[Reason, str] | None:
    """Why ``entry``, which made a signature of ``fmt``, may not vouch for it now, or ``None`` when it may.

    Revocation and expiry come first ("signing key LABEL is revoked"), then the entry's constraints
    ("LABEL: what is violated").
    """
    status = entry.status_at(now)
    if status is not None:
        return status, f"signing key {label} is {'revoked' if status is Reason.REVOKED_KEY else 'expired'}"
    violation = entry.constraints.violation(fmt=fmt, claims=claims)
    if violation:
        return Reason.POLICY_VIOLATION, f"{label}: {violation}"
    return None


__all__ = ["pkix_keys", "read_signature_file", "reading", "standing"]
