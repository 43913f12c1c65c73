"""Verification of OCM component versions against a trust set: keys, X.509 roots, every signature on its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MalformedError, Reason, UsageError, VerificationError
from ..keys import key_id
from ..result import REASON_PRIORITY, SignatureCheck, VerificationResult
from ..trust import TrustedKey, TrustSet
from ._base import VerifyRequest
from ._common import pkix_keys

if TYPE_CHECKING:
    from cryptography import x509

    from ..ocm.archive import ComponentVersion, Repository
    from ..ocm.signing import ParsedSignature

NAME = "ocm"


# -- verification --------------------------------------------------------------------------------------------------


@dataclass
class _Anchor:
    """A trusted PKIX entry, its key, and its certificate when it came from one (parsed once per verification)."""

    entry: TrustedKey
    key: Any
    certificate: x509.Certificate | None


def _anchors(trust: TrustSet) -> list[_Anchor]:
    out: list[_Anchor] = []
    for entry, public in pkix_keys(trust):
        cert = None
        if entry.certificate:
            from cryptography import x509

            try:
                cert = x509.load_pem_x509_certificate(entry.certificate.encode())
            except ValueError:
                cert = None
        out.append(_Anchor(entry, public, cert))
    return out


def _check(
    reason: Reason | None,
    claims: dict[str, Any],
    *,
    key_id: str | None = None,
    key_name: str | None = None,
    detail: str | None = None,
    subject: str | None = None,
) -> SignatureCheck:
    return SignatureCheck(NAME, key_id, reason, key_name=key_name, detail=detail, subject=subject, claims=dict(claims))


# The verdict's order of reasons, less those no OCM signature check gives (an archive fault is raised instead).
_PRIORITY = tuple(r for r in REASON_PRIORITY if r not in (Reason.TAMPERED, Reason.UNSAFE_ARCHIVE))


def _judge_trusted(anchor: _Anchor, claims: dict[str, Any], when: datetime, how: str, kid: str) -> SignatureCheck:
    """The verdict once ``anchor`` vouches for a signature: its expiry, revocation and constraints."""
    entry = anchor.entry
    status = entry.status_at(when)
    violation = entry.constraints.violation(fmt=NAME, claims=claims)
    if status is Reason.REVOKED_KEY:
        problem: tuple[Reason, str] = status, f"key {entry.name} is revoked"
    elif status is Reason.EXPIRED_KEY:
        problem = status, f"key {entry.name} expired at {entry.expires}"
    elif violation:
        problem = Reason.POLICY_VIOLATION, f"{entry.name} ({entry.short_id}): {violation}"
    else:
        return _check(None, claims, key_id=kid, key_name=entry.name, detail=f"{how} {entry.name} ({entry.short_id})")
    return _check(problem[0], claims, key_id=kid, key_name=entry.name, detail=problem[1], subject=entry.key_id)


def _judge_signature(
    parsed: ParsedSignature, claims: dict[str, Any], anchors: Sequence[_Anchor], when: datetime
) -> SignatureCheck:
    """Which trusted key, if any, vouches for ``parsed`` (its digest already checked), and the verdict."""
    from ..ocm.signing import chain_leaf, check_value, key_fits

    found: list[SignatureCheck] = []
    failures: list[SignatureCheck] = []
    leaf_kid: str | None = None
    if parsed.certificates:
        try:
            leaf_kid = key_id(parsed.certificates[0].public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError):
            leaf_kid = None
        if leaf_kid is not None:
            claims = {**claims, "signer_key_id": leaf_kid, "certificate": subject_dn(parsed.certificates[0])}
    for anchor in anchors:
        if anchor.certificate is not None and parsed.certificates:
            try:
                leaf = chain_leaf(parsed, [anchor.certificate], now=when)
            except (VerificationError, MalformedError) as err:
                reason = err.reason if isinstance(err, VerificationError) else Reason.MALFORMED
                if reason is not Reason.UNKNOWN_KEY:  # the chain reaches this root but breaks a rule
                    failures.append(
                        _check(
                            reason,
                            claims,
                            key_id=anchor.entry.key_id,
                            key_name=anchor.entry.name,
                            detail=err.message,
                            subject=err.subject,
                        )
                    )
            else:
                via = {**claims, "certificate": subject_dn(leaf), "root": subject_dn(anchor.certificate)}
                try:
                    check_value(parsed, leaf.public_key())
                except VerificationError as err:
                    failures.append(
                        _check(
                            Reason.BAD_SIGNATURE,
                            via,
                            key_id=anchor.entry.key_id,
                            key_name=anchor.entry.name,
                            detail=f"signature {parsed.name!r} does not verify with the key of "
                            f"{subject_dn(leaf)}, whose chain {anchor.entry.name} anchors: "
                            f"{err.message}",
                            subject=parsed.name,
                        )
                    )
                else:
                    found.append(_judge_trusted(anchor, via, when, "certificate chain up to", anchor.entry.key_id))
                    continue
        if key_fits(parsed, anchor.key):
            try:
                check_value(parsed, anchor.key)
            except VerificationError:
                continue  # not this key
            found.append(_judge_trusted(anchor, claims, when, "signed by", anchor.entry.key_id))
    valid = [c for c in found if c.valid]
    if valid:
        return valid[0]
    if found or failures:
        pool = found or failures
        return min(pool, key=lambda c: _PRIORITY.index(c.reason) if c.reason in _PRIORITY else len(_PRIORITY))
    tried = ", ".join(f"{a.entry.name} ({a.entry.short_id})" for a in anchors) or "none"
    by = f" (signing certificate {claims['certificate']})" if "certificate" in claims else ""
    return _check(
        Reason.UNKNOWN_KEY,
        claims,
        key_id=leaf_kid,
        detail=f"signature {parsed.name!r} is by a key that is not trusted{by}; trusted keys tried: {tried}",
        subject=parsed.name,
    )


def subject_dn(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return f"serial {cert.serial_number}"


def verify_component_version(
    cv: ComponentVersion,
    *,
    trust: TrustSet,
    repository: Repository | None = None,
    names: Sequence[str] = (),
    now: datetime | None = None,
    prefix: str = "",
    anchors: Sequence[_Anchor] | None = None,
) -> list[SignatureCheck]:
    """One :class:`SignatureCheck` per named signature of ``cv`` (only ``names``, when given), judged against
    ``trust``; an empty list when it carries none.

    Raises:
        UsageError: a name in ``names`` that ``cv`` does not carry (its names are listed).
    """
    from ..ocm.signing import DigestCache, check_digest, no_such_signature, parse_signature

    when = now or datetime.now(UTC)
    desc = cv.descriptor
    identity = desc.identity
    for wanted in names:
        if desc.signature(wanted) is None:
            raise no_such_signature(desc, wanted)
    pool = list(anchors) if anchors is not None else _anchors(trust)
    digests = DigestCache(cv, repository)
    base: dict[str, Any] = {"name": desc.name, "version": desc.version, "component": identity}
    checks: list[SignatureCheck] = []
    for index, entry in enumerate(desc.signatures):
        label = entry.get("name") if isinstance(entry, dict) else None
        if names and label not in names:
            continue
        claims = {**base, "signature": label if isinstance(label, str) else f"#{index}"}
        try:
            parsed = parse_signature(entry, index=index)
        except MalformedError as err:
            checks.append(_check(Reason.MALFORMED, claims, detail=err.message, subject=prefix + (err.subject or "")))
            continue
        claims.update(parsed.claims())
        try:
            claims["unchecked_resources"] = check_digest(parsed, digests)
        except VerificationError as err:  # tampered (or an unsafe archive): no key makes that right
            checks.append(_check(err.reason, claims, detail=err.message, subject=prefix + (err.subject or "")))
            continue
        except MalformedError as err:  # a blob or a referenced component version missing, a broken reference
            checks.append(_check(Reason.MALFORMED, claims, detail=err.message, subject=prefix + (err.subject or "")))
            continue
        check = _judge_signature(parsed, claims, pool, when)
        if prefix and check.subject and not check.valid:
            check = replace(check, subject=prefix + check.subject)
        checks.append(check)
    return checks


def verify(
    subject: Path,
    request: VerifyRequest,
    *,
    names: Sequence[str] = (),
    component: str | None = None,
    repository: Sequence[Path] = (),
) -> VerificationResult:
    """Judge every named signature of every component version in ``subject`` (a component archive or a CTF).

    ``names`` limits the check to those signatures (a name a component version does not carry is a usage error
    listing the ones it does); ``component`` (``NAME[:VERSION]``) to one version of a CTF; ``repository`` adds
    transport archives to resolve references from.

    Every component version must be signed by ``threshold`` distinct trusted keys, or be referenced (through a
    recorded digest, directly or not) by one that is: its digest is then covered by that signature. When one is
    neither, the result holds only the checks of the versions that fail (so its verdict is theirs; a version with
    no signature is an ``unsigned`` check naming it). No signature anywhere: an empty result, ``unsigned``.
    """
    if request.signature is not None:
        raise UsageError(
            "OCM signatures live in the component descriptor, each under a name, never in a file of their own; "
            "drop --signature: every named signature is verified",
            subject=str(request.signature),
        )
    from ..ocm.archive import Repositories, archive_kind, component_versions, open_component_version, open_repository

    trust, threshold, where = request.trust, request.threshold, str(subject)
    extra = [open_repository(p) for p in repository]
    kind = archive_kind(subject)
    if component is not None or kind != "ctf":
        versions = [open_component_version(subject, component=component)]
    else:
        versions = list(component_versions(subject))
    anchors = _anchors(trust)
    in_ctf = kind == "ctf"
    per_version: list[tuple[ComponentVersion, Repository, list[SignatureCheck]]] = []
    for cv, repo in versions:
        identity = cv.descriptor.identity
        resolver = Repositories(repo, *extra)
        checks = verify_component_version(
            cv,
            trust=trust,
            repository=resolver,
            names=names,
            now=request.now,
            prefix=f"{identity}: " if in_ctf else "",
            anchors=anchors,
        )
        per_version.append((cv, resolver, checks))
    if not any(checks for _, _, checks in per_version):
        return request.result(subject)
    verified = [
        (cv, resolver)
        for cv, resolver, checks in per_version
        if VerificationResult(where, tuple(checks), threshold=threshold).verified
    ]
    covered = _covered({cv.descriptor.identity for cv, _ in verified}, verified)
    failed: list[SignatureCheck] = []
    everything: list[SignatureCheck] = []
    for cv, _, checks in per_version:
        identity = cv.descriptor.identity
        everything.extend(checks)
        if identity in covered:
            continue
        failed.extend(
            checks
            or [
                _check(
                    Reason.UNSIGNED,
                    {"name": cv.descriptor.name, "version": cv.descriptor.version, "component": identity},
                    detail=f"{identity} carries no signature, and no verified component version references it",
                    subject=identity,
                )
            ]
        )
    return request.result(subject, *(failed or everything))


def _covered(roots: set[str], start: Sequence[tuple[ComponentVersion, Repository]]) -> set[str]:
    """``roots`` and every component version their references reach (with a digest, so covered by their
    signatures): those verified on their own, and those a verified signature vouches for through its digest."""
    from ..ocm.digests import is_excluded

    seen = set(roots)
    todo = list(start)
    while todo:
        cv, resolver = todo.pop()
        for item in cv.descriptor.references:
            if is_excluded(item.get("digest")):
                continue
            target = resolver.lookup(str(item.get("componentName", "")), str(item.get("version", "")))
            if target is not None and target.descriptor.identity not in seen:
                seen.add(target.descriptor.identity)
                todo.append((target, resolver))
    return seen
