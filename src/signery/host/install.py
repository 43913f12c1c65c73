"""Installing a plugin: verify, decide, stage, extract safely, swap atomically, record.

``install_package`` copies the package (and any detached signatures) into the plugins directory's private state
first, so the bytes verified are the bytes extracted and kept for later re-checks (:mod:`signery.host.checks`).
Archives are read only through the strict readers (:mod:`signery.archive` for ZIP, :mod:`signery.host.tarball`
for ``.tar.gz``) and extracted into a fresh temporary directory beside the target; the old version is moved aside
and the new one renamed into place, and any failure before the record is committed puts the old version back.
Nothing is written outside the plugins directory, and a refused install leaves no trace in it.

What a package is (kind, name, version, author) is read by :mod:`signery.package`, the one manifest reader, and
its version must be a :class:`signery.package.Version` (the registry's rule too): upgrades are ordered by it, and
an older version than the installed one is refused unless downgrades are allowed. A package whose manifest sits
one directory down (``id/plugin.json``) installs that directory's contents.

Modes: a ``.tar.gz`` is signed as whole bytes by its detached OpenPGP signature, so its members' modes are covered
by the signature and the owner's execute bit is kept (files 0755 when ``u+x``, else 0644; directories 0755; see
:mod:`signery.host.tarball`, which refuses setuid, setgid, sticky and world-writable modes outright). ZIP packages'
signatures (native, Dify) cover content digests, not modes, so their files are written 0644 and directories 0755
whatever exec bit an entry carries.

A refused or interrupted operation leaves no trace: the plugins directory, ``.signery/``, its lock and store
directory are removed again when this operation created them (:mod:`signery.host._state`).

Layout::

    DIR/NAME/                         the plugin's files, exactly the package's entries
    DIR/.signery/store/NAME/          record.json, the verified package and its detached signatures
    DIR/.signery/lock                 serialises installs, removals and checks
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from .. import package as packages  # a module import: signery.package itself imports signery.host.tarball
from .._internal.files import staged_file
from ..archive import ArchiveLimits, ZipArchive, is_zip
from ..errors import (
    MalformedError,
    PolicyViolationError,
    Reason,
    UnsafeArchiveError,
    UsageError,
    VerificationError,
)
from ..formats import FORMATS, detect_formats, get_format, get_format_or_none, verify_all
from ..policy import PackageKind, Policy, decide
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustSet
from ._state import aside, locked, rmtree
from .records import RECORD_FILE, InstallRecord, check_plugin_name, read_record, record_bytes, store_root
from .tarball import TarLimits, TarListing, extract_tar, is_gzip, scan_tar, write_entry, write_new_file

MAX_SIGNATURE_FILE_BYTES = 1 << 20  # a detached signature is a few KiB


@dataclass(frozen=True)
class HostLimits:
    """Bounds on what one install may bring in.

    Attributes:
        max_package_bytes: size of the package file copied and verified (a hostile download could be endless).
        max_entries: files and directories in the package (inode exhaustion).
        max_total_size: uncompressed bytes written to the plugins directory (decompression bombs).
        max_entry_size: uncompressed bytes of one file.
    """

    max_package_bytes: int = 2 << 30
    max_entries: int = 20_000
    max_total_size: int = 4 << 30
    max_entry_size: int = 2 << 30

    def archive(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_entries=self.max_entries, max_total_size=self.max_total_size, max_entry_size=self.max_entry_size
        )

    def tar(self) -> TarLimits:
        return TarLimits(
            max_entries=self.max_entries, max_total_size=self.max_total_size, max_entry_size=self.max_entry_size
        )


DEFAULT_HOST_LIMITS = HostLimits()


@dataclass(frozen=True)
class _Identity:
    name: str
    version: packages.Version
    author: str | None
    kind: PackageKind
    root: str = ""  # the directory inside the package that holds its manifest ("" at the top)


# -- what a package is ------------------------------------------------------------------------------------------


def _identity(manifest: packages.PackageManifest, kind: PackageKind, where: str) -> _Identity:
    try:
        version = packages.Version(manifest.version)
    except MalformedError as exc:
        raise MalformedError(f"{where}:{manifest.entry}: {exc.message}", subject=f"{where}:{manifest.entry}") from None
    return _Identity(manifest.name, version, manifest.author if kind == "dify" else None, kind, manifest.root)


def _zip_identity(archive: ZipArchive, where: str) -> _Identity:
    manifest = packages.manifest_from_zip(archive, source=where)
    if manifest is None:
        raise MalformedError(
            f"{where}: no manifest.yaml, manifest.yml or plugin.json at the top level or one directory down",
            subject=where,
        )
    return _identity(manifest, "dify" if manifest.kind == "dify" else "zip", where)


def _tar_identity(listing: TarListing, where: str) -> _Identity:
    # Mattermost bundles hold plugin.json at the top or inside the one top-level directory (usually the plugin id).
    manifest = packages.manifest_from_tar(listing, source=where)
    if manifest is None or manifest.kind != "mattermost":
        found = f" ({manifest.entry} is not a Mattermost manifest)" if manifest is not None else ""
        raise MalformedError(f"{where}: no plugin.json at the top of the bundle{found}", subject=where)
    return _identity(manifest, "mattermost", where)


# -- verification -----------------------------------------------------------------------------------------------


def verify_package(
    package: Path, signatures: Sequence[Path], *, trust: TrustSet, now: datetime | None = None
) -> VerificationResult:
    """Every signature on ``package``: embedded ones, and each detached file in ``signatures``.

    A detached file that no format recognises is reported as a ``malformed`` signature, never ignored.
    """
    result = verify_all(package, trust=trust, now=now)
    for sig in signatures:
        found = detect_formats(package, signature=sig)
        if found:
            result = result.merged(get_format(found[0]).verify(package, trust=trust, signature=sig, now=now))
            continue
        check = SignatureCheck(
            "unknown", None, Reason.MALFORMED, detail=f"{sig.name} is not a signature", subject=str(sig)
        )
        result = result.merged(VerificationResult(str(package), (check,)))
    return result


def signatures_beside(package: Path) -> list[Path]:
    """The detached signature files beside ``package`` that its formats would find (``X.sig``, ``X.signery.json``).

    The host stages a copy of the package, beside which nothing lies: it gathers these from the user's path first,
    so that ``install`` finds what ``verify`` finds.
    """
    found: list[Path] = []
    for name in FORMATS:
        fmt = get_format_or_none(name)
        if fmt is None or not fmt.detaches:
            continue
        beside = fmt.detached_beside(package)
        if beside is not None and beside not in found:
            found.append(beside)
    return found


def bind_claimed_name(result: VerificationResult, name: str) -> VerificationResult:
    """Refuse signatures whose claim of the package's name (the format's ``name_claim``) is not plugin ``name``.

    That claim is the signer's own statement, and it is what a trust entry's name patterns are checked against;
    without this, a key limited to ``acme-*`` could vouch for any plugin by claiming an ``acme-*`` name.
    """
    checks = []
    for s in result.signatures:
        fmt = get_format_or_none(s.format)
        claim = fmt.name_claim if fmt is not None else None
        claimed = s.claims.get(claim) if claim else None
        if s.valid and claimed is not None and str(claimed) != name:
            s = replace(
                s,
                reason=Reason.POLICY_VIOLATION,
                detail=f"signature by {s.key_name or s.key_id} is for package {claimed!r}, not plugin {name!r}",
                subject=s.key_id,
            )
        checks.append(s)
    return VerificationResult(result.subject, tuple(checks), threshold=result.threshold)


def _signer(result: VerificationResult) -> SignatureCheck | None:
    return next((s for s in result.signatures if s.valid), None)


# -- install ----------------------------------------------------------------------------------------------------


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def install_package(
    package: Path,
    *,
    plugins_dir: Path,
    policy: Policy,
    trust: TrustSet,
    allow_unverified: bool = False,
    allow_downgrade: bool = False,
    signature: Path | None = None,
    signatures: Sequence[Path] = (),
    expected_name: str | None = None,
    expected_version: str | None = None,
    source: str | None = None,
    limits: HostLimits = DEFAULT_HOST_LIMITS,
    on_stage: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> InstallRecord:
    """Verify ``package`` under ``policy`` and install it into ``plugins_dir/NAME``; return the install record.

    Mattermost bundles (``.tar.gz``) take their detached OpenPGP signature from ``signature``/``signatures`` or
    ``PACKAGE.sig`` / ``PACKAGE.asc`` beside the package. ``on_stage`` is called with ``staged``, ``verified``,
    ``extracted``, ``swapped`` and ``recorded`` as the install progresses; an exception it raises aborts the install
    like any failure at that point would (tests use it to interrupt an install half-way).

    Raises:
        VerificationError: refused by the policy (reason and the file or key at fault), a downgrade without
            ``allow_downgrade``, or a name/version other than ``expected_*``.
        UnsafeArchiveError: traversal, links, duplicates, bombs... (the entry named); nothing is written.
        MalformedError: not a plugin package, or its version is not a :class:`signery.package.Version`.
    """
    package = Path(package)
    plugins_dir = Path(plugins_dir).absolute()
    sig_paths = [Path(s) for s in ([signature] if signature is not None else []) + list(signatures)]
    if not package.is_file():
        raise UsageError(f"{package} does not exist or is not a file", subject=str(package))
    stage = on_stage or (lambda _s: None)
    with locked(plugins_dir) as state:
        store_existed = store_root(plugins_dir).exists()
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=state))
        tree_tmp: Path | None = None
        committed = False
        try:
            staged = staging / _safe_file_name(package.name, "package")
            sha256, size = _stage_copy(package, staged, limit=limits.max_package_bytes)
            is_tar = is_gzip(staged)
            if not sig_paths:
                sig_paths = signatures_beside(package)
            staged_sigs: list[Path] = []
            for i, sig in enumerate(sig_paths):
                dest = staging / f"signature-{i}{''.join(sig.suffixes[-1:]) or '.sig'}"
                _stage_copy(sig, dest, limit=MAX_SIGNATURE_FILE_BYTES)
                staged_sigs.append(dest)
            ident, listing = _identify(staged, package, is_tar=is_tar, limits=limits)
            name = check_plugin_name(ident.name, source=f"{package} (plugin name)")
            _check_expected(ident, expected_name, expected_version, package)
            stage("staged")

            result = verify_package(staged, staged_sigs, trust=policy.trust_for(ident.kind, trust), now=now)
            result = bind_claimed_name(result, name)
            decision = decide(result, policy, kind=ident.kind, allow_unverified=allow_unverified)
            if not decision.allow:
                raise VerificationError(
                    _outside(decision.message, staging, package),
                    reason=decision.reason,
                    subject=_outside(decision.subject or str(package), staging, package),
                    hint=None if decision.setting is None else f"decided by {decision.setting}",
                )
            existing = read_record(plugins_dir, name)
            _check_upgrade(existing, ident, name, plugins_dir, allow_downgrade)
            stage("verified")

            tree_tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=plugins_dir))
            # A plugin directory like any other (mkdtemp makes 0700): 0755 less the umask, as its contents get.
            os.chmod(tree_tmp, 0o755 & ~_umask())
            if listing is not None:
                files = extract_tar(staged, tree_tmp, listing, root=ident.root, source=str(package))
            else:
                files = _extract_zip(staged, tree_tmp, limits, root=ident.root)
            stage("extracted")

            signer = _signer(result)
            record = InstallRecord(
                name=name,
                version=ident.version.text,
                kind=ident.kind,
                status=decision.status or "unverified",
                sha256=sha256,
                size=size,
                package_file=staged.name,
                installed_at=datetime.now(UTC),
                author=ident.author,
                reason=decision.reason.value if decision.reason else None,
                message=_outside(decision.message, staging, package),
                signer_key_id=signer.key_id if signer else None,
                signer_key_name=signer.key_name if signer else None,
                signature_format=signer.format if signer else None,
                category=str(signer.claims["category"]) if signer and "category" in signer.claims else None,
                signature_files=tuple(s.name for s in staged_sigs),
                source=source or str(package),
                files=files,
            )
            write_new_file(staging / RECORD_FILE, [record_bytes(record)])
            _commit(plugins_dir, name, tree_tmp, staging, stage)
            tree_tmp = None
            committed = True
            return record
        finally:
            rmtree(tree_tmp)
            rmtree(staging if staging.exists() else None)
            if not committed and not store_existed:
                with contextlib.suppress(OSError):  # created by a commit that was rolled back
                    os.rmdir(store_root(plugins_dir))


def _safe_file_name(name: str, fallback: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}", name) and name != RECORD_FILE else fallback


def _stage_copy(src: Path, dest: Path, *, limit: int) -> tuple[str, int]:
    """Copy ``src`` to ``dest`` (hashed as it streams, at most ``limit`` bytes); its SHA-256 (hex) and size."""
    with (
        Path(src).open("rb") as fin,
        staged_file(dest.parent, limit=limit, what=str(src), limit_error=UnsafeArchiveError, mode=0o644) as out,
    ):
        out.copy_from(fin)
        out.commit(dest.name)
    return out.sha256, out.size


def _identify(staged: Path, package: Path, *, is_tar: bool, limits: HostLimits) -> tuple[_Identity, TarListing | None]:
    """What the staged package is, and (for a bundle) its listing; the whole archive is vetted on the way."""
    if is_tar:
        listing = scan_tar(
            staged,
            limits=limits.tar(),
            capture=packages.is_manifest_path,
            capture_max=packages.MAX_MANIFEST_BYTES,
            source=str(package),
        )
        return _tar_identity(listing, str(package)), listing
    if is_zip(staged):
        with ZipArchive.open(staged, limits=limits.archive()) as archive:
            return _zip_identity(archive, str(package)), None
    raise MalformedError(f"{package} is neither a ZIP package nor a .tar.gz bundle", subject=str(package))


def _outside(text: str, staging: Path, package: Path) -> str:
    """Name the user's file in messages, not the private staging copy that was verified."""
    return text.replace(str(staging / _safe_file_name(package.name, "package")), str(package))


def _check_expected(ident: _Identity, name: str | None, version: str | None, package: Path) -> None:
    if name is not None and ident.name != name:
        raise PolicyViolationError(
            f"{package} is plugin {ident.name!r}, not the requested {name!r}", subject=str(package)
        )
    if version is not None and ident.version.text != version:
        raise PolicyViolationError(
            f"{package} is version {ident.version.text!r} of {ident.name}, not the requested {version!r}",
            subject=str(package),
        )


def _check_upgrade(
    existing: InstallRecord | None, ident: _Identity, name: str, plugins_dir: Path, allow_downgrade: bool
) -> None:
    target = plugins_dir / name
    if existing is None:
        if target.exists() or target.is_symlink():
            raise UsageError(
                f"{target} exists but was not installed by signery; refusing to replace it", subject=str(target)
            )
        return
    if existing.author and ident.author and existing.author != ident.author:
        raise PolicyViolationError(
            f"{name} is installed from author {existing.author!r}; refusing to replace it with one by {ident.author!r}",
            subject=name,
        )
    if allow_downgrade:
        return
    new = ident.version
    old = packages.Version.parse(existing.version)
    if old is None:  # recorded by an older signery, which took any text for a version
        raise PolicyViolationError(
            f"cannot order the installed version {existing.version!r} of {name} before {new.text!r}",
            subject=name,
            hint="--allow-downgrade installs it anyway",
        )
    if new < old:
        raise PolicyViolationError(
            f"{name} {ident.version} is older than the installed {existing.version} (rollback protection)",
            subject=name,
            hint="--allow-downgrade installs it anyway",
        )


def _extract_zip(package: Path, dest: Path, limits: HostLimits, *, root: str = "") -> dict[str, str]:
    """Write the package's entries under ``root`` into ``dest``: files 0644 (ZIP signatures do not cover modes, so
    an entry's exec bit is not applied), directories 0755."""
    files: dict[str, str] = {}
    with ZipArchive.open(package, limits=limits.archive()) as archive:
        for entry in archive.entries:
            name = entry.name.rstrip("/")
            placed = write_entry(
                dest, name, archive.iter_chunks(entry), root=root, is_dir=entry.is_dir, executable=False
            )
            if placed is not None:
                files[placed[0]] = placed[1]
    return files


def _commit(plugins_dir: Path, name: str, tree_tmp: Path, staging: Path, stage: Callable[[str], None]) -> None:
    """Swap the new tree and store entry in; on any failure put the old ones back."""
    target = plugins_dir / name
    store = store_root(plugins_dir) / name
    old_tree = old_store = None
    tree_in = store_in = False
    try:
        old_tree = aside(target)
        os.rename(tree_tmp, target)
        tree_in = True
        stage("swapped")
        store.parent.mkdir(parents=True, exist_ok=True)
        old_store = aside(store)
        os.rename(staging, store)
        store_in = True
        stage("recorded")
    except BaseException:
        with contextlib.suppress(OSError):
            if store_in:
                os.rename(store, staging)
            if old_store is not None:
                os.rename(old_store, store)
            if tree_in:
                os.rename(target, tree_tmp)
            if old_tree is not None:
                os.rename(old_tree, target)
        raise
    rmtree(old_tree)
    rmtree(old_store)


__all__ = [
    "DEFAULT_HOST_LIMITS",
    "MAX_SIGNATURE_FILE_BYTES",
    "HostLimits",
    "bind_claimed_name",
    "install_package",
    "signatures_beside",
    "verify_package",
]
