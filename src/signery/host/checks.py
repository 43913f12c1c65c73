"""Installed plugins: list them, re-check them against their records and the current policy, remove them.

A check re-verifies the package kept in ``DIR/.signery/store/NAME/`` (the bytes that were verified at install)
with today's trust and policy, and compares every installed file with the SHA-256 the record holds: a file added,
removed, changed or turned into a link is ``tampered``. Checks and removals hold the same lock as installs
(:mod:`signery.host._state`); a check leaves nothing behind that was not there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .._internal.records import fields_json
from ..digests import hash_file
from ..errors import MalformedError, Reason, SigneryError, TamperedError, UnsafeArchiveError, UsageError
from ..policy import PackageKind, Policy, decide
from ..trust import TrustSet
from ._state import aside, locked, rmtree
from .install import bind_claimed_name, verify_package
from .records import InstallRecord, check_plugin_name, list_records, read_record, store_root


def list_installed(plugins_dir: Path) -> list[InstallRecord]:
    """The records of every installed plugin, by name."""
    return list_records(Path(plugins_dir))


@dataclass(frozen=True)
class CheckOutcome:
    """The re-check of one installed plugin against its record and the current policy."""

    name: str
    version: str
    ok: bool
    status: str
    reason: Reason | None
    message: str
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return fields_json(self, "name version ok status reason message subject")


def _hash_path(path: Path) -> str:
    return hash_file(path)["sha256"].hex()


def _tree_difference(root: Path, files: dict[str, str]) -> str | None:
    """The first file of ``root`` that differs from ``files`` (added, removed, changed, or turned into a link)."""
    if not root.is_dir() or root.is_symlink():
        return "."
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for d in dirnames:
            if (base / d).is_symlink():
                return (base / d).relative_to(root).as_posix()
        for f in filenames:
            p = base / f
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() or not p.is_file() or rel not in files or _hash_path(p) != files[rel]:
                return rel
            seen.add(rel)
    missing = sorted(set(files) - seen)
    return missing[0] if missing else None


def _kind(text: str) -> PackageKind:
    if text == "dify":
        return "dify"
    return "mattermost" if text == "mattermost" else "zip"


def _check_one(
    plugins_dir: Path, record: InstallRecord, policy: Policy, trust: TrustSet, now: datetime | None
) -> CheckOutcome:
    store = store_root(plugins_dir) / record.name
    package = store / record.package_file

    def fail(reason: Reason, message: str, subject: str | None) -> CheckOutcome:
        return CheckOutcome(record.name, record.version, False, record.status, reason, message, subject)

    if not package.is_file() or _hash_path(package) != record.sha256:
        return fail(Reason.TAMPERED, f"the kept package {package} differs from the one installed", str(package))
    diff = _tree_difference(plugins_dir / record.name, record.files)
    if diff is not None:
        where = str(plugins_dir / record.name / diff)
        return fail(Reason.TAMPERED, f"installed file {where} differs from the verified package", where)
    try:
        kind = _kind(record.kind)
        result = verify_package(
            package, [store / s for s in record.signature_files], trust=policy.trust_for(kind, trust), now=now
        )
        result = bind_claimed_name(result, record.name)
    except (MalformedError, UnsafeArchiveError, TamperedError) as exc:
        return fail(exc.reason, exc.message, exc.subject)
    decision = decide(result, policy, kind=kind, allow_unverified=record.status == "unverified")
    if not decision.allow:
        return fail(decision.reason or Reason.POLICY_VIOLATION, decision.message, decision.subject)
    if record.status == "verified" and decision.status != "verified":
        reason = decision.reason or Reason.UNKNOWN_KEY
        return fail(reason, f"was verified when installed, now {reason.value}: {result.message}", decision.subject)
    return CheckOutcome(record.name, record.version, True, record.status, decision.reason, decision.message)


def check_installed(
    plugins_dir: Path, *, policy: Policy, trust: TrustSet, now: datetime | None = None
) -> list[CheckOutcome]:
    """Re-verify every installed plugin against its record (kept package, installed files) and current policy."""
    plugins_dir = Path(plugins_dir).absolute()
    records = list_records(plugins_dir)
    if not records:
        return []
    with locked(plugins_dir, keep=False):  # a check leaves nothing behind that was not there
        out: list[CheckOutcome] = []
        for r in records:
            try:
                out.append(_check_one(plugins_dir, r, policy, trust, now))
            except SigneryError as exc:
                out.append(CheckOutcome(r.name, r.version, False, r.status, exc.reason, exc.message, exc.subject))
        return out


def remove_plugin(plugins_dir: Path, name: str) -> InstallRecord:
    """Uninstall ``name``: its files and its record go together (moved aside first, then deleted)."""
    plugins_dir = Path(plugins_dir).absolute()
    check_plugin_name(name, source="plugin name")
    with locked(plugins_dir):
        record = read_record(plugins_dir, name)
        if record is None:
            raise UsageError(f"{name} is not installed in {plugins_dir}", subject=name)
        store = aside(store_root(plugins_dir) / name)
        tree = aside(plugins_dir / name)
        rmtree(tree)
        rmtree(store)
        return record


__all__ = ["CheckOutcome", "check_installed", "list_installed", "remove_plugin"]
