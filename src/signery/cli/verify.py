"""``signery verify`` and ``signery inspect``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError, VerificationError
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustSet
from ._common import (
    EXIT_OK,
    EXIT_REFUSED,
    Progress,
    available_formats,
    command,
    emit_json,
    existing_file_option,
    handle_errors,
    json_option,
    quiet_option,
    signature_option,
    trust_store_dir,
    trust_store_option,
)


def load_trust(keys: tuple[Path, ...], trust_store: Path | None, *, fmt: str | None) -> TrustSet:
    """--key files when given (and then only those), else the trust store and what the formats trust by default."""
    from ..formats import default_trust
    from ..trust import TrustedKey, TrustStore, load_trusted_key_file

    if keys:
        loaded: list[TrustedKey] = []
        for i, path in enumerate(keys):
            entry = load_trusted_key_file(path).key
            if any(k.name == entry.name for k in loaded):
                entry = dataclasses.replace(entry, name=f"{entry.name}#{i}")
            loaded.append(entry)
        return TrustSet(loaded)
    trust = TrustStore(trust_store_dir(trust_store)).load()
    return trust.union(default_trust([fmt] if fmt else None))


def _line(check: SignatureCheck) -> str:
    mark = "✓" if check.valid else "✗"
    who = check.key_name or "?"
    from ..trust import short_key_id

    kid = short_key_id(check.key_id) if check.key_id else "-"
    when = check.signed_at.strftime("%Y-%m-%d %H:%M:%SZ") if check.signed_at else "-"
    # Dify reports the keys it tried as "candidates"; that list is for --json, not for a one-line summary.
    claims = " ".join(f"{k}={v}" for k, v in sorted(check.claims.items()) if k != "candidates")
    text = f"{mark} {check.status:<16} {check.format:<8} {who} ({kid})  {when}"
    if claims:
        text += f"  {claims}"
    if not check.valid and check.detail:
        text += f"\n    {check.detail}"
    return text


def render(result: VerificationResult) -> None:
    for check in result.signatures:
        click.echo(_line(check))
    if result.verified:
        click.echo(f"verified: {result.subject} ({result.message})")
    else:
        at = f" [{result.fault}]" if result.fault else ""
        click.echo(f"refused: {result.reason}: {result.message}{at}", err=True)


@command()
@click.argument("subject", type=click.Path(exists=True, path_type=Path))
@existing_file_option(
    "--key",
    "-k",
    "keys",
    multiple=True,
    help="Trust only this public key (PEM, X.509 certificate or OpenPGP); repeatable. Default: the trust store.",
)
@trust_store_option()
@click.option("--threshold", type=click.IntRange(min=1), default=1, show_default=True, help="Distinct trusted keys.")
@click.option("--format", "fmt", type=click.Choice(available_formats()), help="Only this format (default: all found).")
@signature_option
@quiet_option
@json_option
@handle_errors
def verify(
    subject: Path,
    keys: tuple[Path, ...],
    trust_store: Path | None,
    threshold: int,
    fmt: str | None,
    signature: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Verify SUBJECT: exit 0 if at least THRESHOLD distinct trusted keys signed exactly its contents.

    Every signature found (native, Dify, OpenPGP) is reported on its own line with its status; a refusal names
    its reason (unsigned, unknown-key, bad-signature, tampered, unsafe-archive, expired-key, revoked-key,
    policy-violation) and the file or key at fault.

    Detached OpenPGP signatures: --signature X.sig (found beside X by default); Dify's marketplace key is built in.
    Exit codes: 0 verified, 1 refused, 2 unusable input, 3 environment error.

    \b
    Examples:
      signery verify plugin.signed.zip                       # keys from the trust store
      signery verify plugin.signed.zip --key a.pub --key b.pub --threshold 2 --json
      signery verify plugin-0.1.0.tar.gz --signature plugin-0.1.0.tar.gz.sig --key alice.public.asc
    """
    trust = load_trust(keys, trust_store, fmt=fmt)
    try:
        result = _verify(subject, trust, fmt, signature, threshold, quiet)
    except VerificationError as err:  # refused before any signature could be judged (unsafe or corrupt archive)
        if not as_json:
            raise
        doc: dict[str, Any] = {"verified": False, "subject": err.subject, "signatures": []}
        emit_json(doc, ok=False, reason=err.reason.value, message=err.message)
        raise SystemExit(EXIT_REFUSED) from None
    if as_json:
        reason = result.reason.value if result.reason else None
        emit_json(result.to_dict(), ok=result.verified, reason=reason, message=result.message)
    else:
        render(result)
    raise SystemExit(EXIT_OK if result.verified else EXIT_REFUSED)


def _verify(
    subject: Path, trust: TrustSet, fmt: str | None, signature: Path | None, threshold: int, quiet: bool
) -> VerificationResult:
    from ..formats import get_format, verify_all

    bar = Progress(subject.stat().st_size if subject.is_file() else 0, f"verifying {subject.name}", quiet=quiet)
    try:
        if fmt is None:
            return verify_all(subject, trust=trust, signature=signature, threshold=threshold, progress=bar.advance)
        # A format named explicitly is asked directly, so its own errors (a malformed signature file) come through.
        return get_format(fmt).verify(
            subject, trust=trust, signature=signature, threshold=threshold, progress=bar.advance
        )
    finally:
        bar.close()


@command()
@click.argument("subject", type=click.Path(exists=True, path_type=Path))
@signature_option
@json_option
@handle_errors
def inspect(subject: Path, signature: Path | None, as_json: bool) -> None:
    """Show the signatures SUBJECT carries and what they claim, without judging trust.

    \b
    Examples:
      signery inspect plugin.signed.zip
      signery inspect plugin.signed.zip --json     # {"envelopes": [...DSSE...], "signatures": [...]}
      signery inspect plugin-0.1.0.tar.gz --signature plugin-0.1.0.tar.gz.asc
    """
    from ..formats import detect_formats, get_format

    found = detect_formats(subject, signature=signature)
    doc: dict[str, Any] = {"subject": str(subject), "formats": found, "envelopes": [], "signatures": []}
    for name in found:
        part = get_format(name).inspect(subject, signature=signature)
        doc["envelopes"].extend(part.get("envelopes", []))
        doc["signatures"].extend(part.get("signatures", []))
        doc.setdefault("details", {})[name] = {k: v for k, v in part.items() if k not in ("envelopes", "signatures")}
    summary = f"{subject}: {len(doc['signatures'])} signature(s) in {', '.join(found) or 'no format'}"
    if as_json:
        emit_json(doc, message=summary)
        return
    if not found:
        raise UsageError(f"{subject} carries no signature", subject=str(subject))
    click.echo(summary)
    for s in doc["signatures"]:
        claims = " ".join(f"{k}={v}" for k, v in sorted((s.get("claims") or {}).items()))
        click.echo(f"  {s.get('format')}  key {s.get('key_id')}  signed {s.get('signed_at') or '-'}  {claims}".rstrip())
