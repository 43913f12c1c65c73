"""The plugin installer: verify, decide, extract safely, swap atomically, record.

``install_package`` copies the package (and any detached signatures) into the plugins directory's private state
first, so the bytes verified are the bytes extracted and kept for later re-checks. Archives are read only through
the strict readers (:mod:`signery.archive` for ZIP, :mod:`signery.host.tarball` for ``.tar.gz``) and extracted into
a fresh temporary directory beside the target; the old version is moved aside and the new one renamed into place,
and any failure before the record is committed puts the old version back. Nothing is written outside the
plugins directory, and a refused install leaves no trace in it.

What a package is (kind, name, version, author) is read by :mod:`signery.package`, the one manifest reader. A
package whose manifest sits one directory down (``id/plugin.json``) installs that directory's contents.

Modes: a ``.tar.gz`` is signed as whole bytes by its detached OpenPGP signature, so its members' modes are covered
by the signature and the owner's execute bit is kept (files 0755 when ``u+x``, else 0644; directories 0755; see
:mod:`signery.host.tarball`, which refuses setuid, setgid, sticky and world-writable modes outright). ZIP packages'
signatures (native, Dify) cover content digests, not modes, so their files are written 0644 and directories 0755
whatever exec bit an entry carries.

A refused or interrupted operation leaves no trace: the plugins directory, ``.signery/``, its lock and store
directory are removed again when this operation created them (the lock file is unlinked while still held, and a
waiting process that finds its lock file gone starts over).

Layout::

    DIR/NAME/                         the plugin's files, exactly the package's entries
    DIR/.signery/store/NAME/          record.json, the verified package and its detached signatures
    DIR/.signery/lock                 serialises installs, removals and checks
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import package as packages  # a module import: signery.package itself imports signery.host.tarball
from ..archive import ArchiveLimits, ZipArchive, is_zip
from ..errors import (
    EnvironmentFailure,
    MalformedError,
    PolicyViolationError,
    Reason,
    SigneryError,
    TamperedError,
    UnsafeArchiveError,
    UsageError,
    VerificationError,
)
from ..formats import FORMATS, detect_formats, get_format
from ..policy import PackageKind, Policy, decide
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustSet
from .records import (
    RECORD_FILE,
    STATE_DIR,
    InstallRecord,
    check_plugin_name,
    list_records,
    read_record,
    record_bytes,
    store_root,
)
from .tarball import TarLimits, TarListing, extract_tar, make_dirs, scan_tar, write_new_file

_COPY_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_LOCK_ATTEMPTS = 20  # a waiting process starts over when the lock's creator failed and removed it
_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
_MAX_VERSION = 128  # longer than any real version string
_EMBEDDED_ONLY = ("dify",)  # formats whose signatures live inside the package, never in a detached file


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
    version: str
    author: str | None
    kind: PackageKind
    root: str = ""  # the directory inside the package that holds its manifest ("" at the top)


# -- locking and staging ----------------------------------------------------------------------------------------


def _make_missing_dirs(plugins_dir: Path, state: Path) -> list[Path]:
    """Create ``plugins_dir`` (and missing parents) and ``state``; return the directories this call created."""
    missing: list[Path] = []
    d = plugins_dir
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            os.mkdir(d)
            created.append(d)
        except FileExistsError:
            pass
    try:
        os.mkdir(state, 0o700)
        created.append(state)
    except FileExistsError:
        pass
    return created


def _remove_created(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):  # not empty (someone else is using it now) or already gone
            os.rmdir(d)


@contextlib.contextmanager
def _locked(plugins_dir: Path, *, keep: bool = True) -> Iterator[Path]:
    """Hold ``DIR/.signery/lock``; yields ``DIR/.signery``.

    What this call created (the plugins directory and its parents, ``.signery/``, the lock file) is removed again
    when the body raises, and also when it returns if ``keep`` is false (read-only operations). The lock file is
    unlinked while still held; a process waiting for it notices and starts over on a fresh one.
    """
    state = plugins_dir / STATE_DIR
    lock = state / "lock"
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    for _attempt in range(_LOCK_ATTEMPTS):
        created: list[Path] = []
        made_lock = False
        try:
            created = _make_missing_dirs(plugins_dir, state)
            try:
                fd = os.open(lock, flags | os.O_CREAT | os.O_EXCL, 0o600)
                made_lock = True
            except FileExistsError:
                fd = os.open(lock, flags)
        except FileNotFoundError:  # a failing process removed a directory it had created: start over
            _remove_created(created)
            continue
        except OSError as exc:
            _remove_created(created)
            raise EnvironmentFailure(
                f"plugins directory {plugins_dir} is not writable: {exc.strerror}", subject=str(plugins_dir)
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
        except BaseException:  # interrupted while waiting: leave nothing behind either
            if made_lock:
                with contextlib.suppress(OSError):
                    os.unlink(lock)
            os.close(fd)
            _remove_created(created)
            raise
        if current is None or (current.st_dev, current.st_ino) != (held.st_dev, held.st_ino):
            os.close(fd)  # the file we waited on was removed by its failing creator
            _remove_created(created)
            continue
        break
    else:
        raise EnvironmentFailure(f"cannot lock {lock}: it keeps being removed", subject=str(lock))
    ok = False
    try:
        yield state
        ok = True
    finally:
        try:
            if not (ok and keep):
                if made_lock:
                    with contextlib.suppress(OSError):
                        os.unlink(lock)
                _remove_created(created)
        finally:
            os.close(fd)


def _copy_bounded(src: Path, dest: Path, *, limit: int) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with Path(src).open("rb") as fin:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(dest, flags, 0o644), "wb") as fout:
            while chunk := fin.read(_COPY_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UnsafeArchiveError(f"{src} is larger than {limit} bytes", subject=str(src))
                h.update(chunk)
                fout.write(chunk)
    return h.hexdigest(), size


def _safe_file_name(name: str, fallback: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}", name) and name != RECORD_FILE else fallback


def _rmtree(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


# -- what a package is ------------------------------------------------------------------------------------------


def _zip_identity(archive: ZipArchive, where: str) -> _Identity:
    manifest = packages.manifest_from_zip(archive, source=where)
    if manifest is None:
        raise MalformedError(
            f"{where}: no manifest.yaml, manifest.yml or plugin.json at the top level or one directory down",
            subject=where,
        )
    if manifest.kind == "dify":
        return _Identity(manifest.name, manifest.version, manifest.author, "dify", manifest.root)
    return _Identity(manifest.name, manifest.version, None, "zip", manifest.root)


def _tar_identity(listing: TarListing, where: str) -> _Identity:
    # Mattermost bundles hold plugin.json at the top or inside the one top-level directory (usually the plugin id).
    manifest = packages.manifest_from_tar(listing, source=where)
    if manifest is None or manifest.kind != "mattermost":
        found = f" ({manifest.entry} is not a Mattermost manifest)" if manifest is not None else ""
        raise MalformedError(f"{where}: no plugin.json at the top of the bundle{found}", subject=where)
    return _Identity(manifest.name, manifest.version, None, "mattermost", manifest.root)


def version_key(text: str) -> tuple[Any, ...] | None:
    """A sort key for semantic versions (pre-releases before releases); ``None`` when ``text`` is not one."""
    m = _SEMVER.fullmatch(text.strip()) if len(text) <= _MAX_VERSION else None
    if m is None:
        return None
    pre = m.group(4)
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, ids


# -- verification -----------------------------------------------------------------------------------------------


def verify_package(
    package: Path, signatures: Sequence[Path], *, trust: TrustSet, now: datetime | None = None
) -> VerificationResult:
    """Every signature on ``package``: embedded ones, and each detached file in ``signatures``.

    A detached file that no format recognises is reported as a ``malformed`` signature, never ignored.
    """
    result = VerificationResult(str(package), ())
    for name in detect_formats(package):
        result = result.merged(get_format(name).verify(package, trust=trust, now=now))
    for sig in signatures:
        understood = False
        for name in FORMATS:
            if name in _EMBEDDED_ONLY:
                continue
            try:
                module = get_format(name)
            except ModuleNotFoundError:
                continue
            if module.detect(package, signature=sig):
                understood = True
                result = result.merged(module.verify(package, trust=trust, signature=sig, now=now))
                break
        if not understood:
            check = SignatureCheck(
                "unknown", None, Reason.MALFORMED, detail=f"{sig.name} is not a signature", subject=str(sig)
            )
            result = result.merged(VerificationResult(str(package), (check,)))
    return result


def _bind_claimed_name(result: VerificationResult, name: str) -> VerificationResult:
    """Refuse native signatures whose ``name`` claim is not the plugin being installed.

    That claim is the signer's own statement, and it is what a trust entry's name patterns are checked against;
    without this, a key limited to ``acme-*`` could vouch for any plugin by claiming an ``acme-*`` name.
    """
    checks = []
    for s in result.signatures:
        claimed = s.claims.get("name")
        if s.valid and s.format == "native" and claimed is not None and str(claimed) != name:
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
        MalformedError: not a plugin package.
    """
    package = Path(package)
    plugins_dir = Path(plugins_dir).absolute()
    sig_paths = [Path(s) for s in ([signature] if signature is not None else []) + list(signatures)]
    if not package.is_file():
        raise UsageError(f"{package} does not exist or is not a file", subject=str(package))
    stage = on_stage or (lambda _s: None)
    with _locked(plugins_dir) as state:
        store_existed = store_root(plugins_dir).exists()
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=state))
        tree_tmp: Path | None = None
        committed = False
        try:
            staged = staging / _safe_file_name(package.name, "package")
            sha256, size = _copy_bounded(package, staged, limit=limits.max_package_bytes)
            is_tar = _head(staged) == _GZIP_MAGIC
            if is_tar and not sig_paths:
                from ..formats.openpgp import find_signature

                found = find_signature(package)
                sig_paths = [found] if found is not None else []
            staged_sigs: list[Path] = []
            for i, sig in enumerate(sig_paths):
                dest = staging / f"signature-{i}{''.join(sig.suffixes[-1:]) or '.sig'}"
                _copy_bounded(sig, dest, limit=1 << 20)
                staged_sigs.append(dest)
            listing: TarListing | None = None
            if is_tar:
                listing = scan_tar(
                    staged,
                    limits=limits.tar(),
                    capture=packages.is_manifest_path,
                    capture_max=packages.MAX_MANIFEST_BYTES,
                    source=str(package),
                )
                ident = _tar_identity(listing, str(package))
            elif is_zip(staged):
                with ZipArchive.open(staged, limits=limits.archive()) as archive:
                    ident = _zip_identity(archive, str(package))
            else:
                raise MalformedError(f"{package} is neither a ZIP package nor a .tar.gz bundle", subject=str(package))
            name = check_plugin_name(ident.name, source=f"{package} (plugin name)")
            _check_expected(ident, expected_name, expected_version, package)
            stage("staged")

            result = verify_package(staged, staged_sigs, trust=policy.trust_for(ident.kind, trust), now=now)
            result = _bind_claimed_name(result, name)
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
            os.chmod(tree_tmp, 0o755)  # noqa: S103 - a plugin directory like any other (mkdtemp makes 0700)
            if listing is not None:
                files = extract_tar(staged, tree_tmp, listing, root=ident.root, source=str(package))
            else:
                files = _extract_zip(staged, tree_tmp, limits, root=ident.root)
            stage("extracted")

            signer = _signer(result)
            record = InstallRecord(
                name=name,
                version=ident.version,
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
            _rmtree(tree_tmp)
            _rmtree(staging if staging.exists() else None)
            if not committed and not store_existed:
                with contextlib.suppress(OSError):  # created by a commit that was rolled back
                    os.rmdir(store_root(plugins_dir))


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(2)


def _outside(text: str, staging: Path, package: Path) -> str:
    """Name the user's file in messages, not the private staging copy that was verified."""
    return text.replace(str(staging / _safe_file_name(package.name, "package")), str(package))


def _check_expected(ident: _Identity, name: str | None, version: str | None, package: Path) -> None:
    if name is not None and ident.name != name:
        raise PolicyViolationError(
            f"{package} is plugin {ident.name!r}, not the requested {name!r}", subject=str(package)
        )
    if version is not None and ident.version != version:
        raise PolicyViolationError(
            f"{package} is version {ident.version!r} of {ident.name}, not the requested {version!r}",
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
    old, new = version_key(existing.version), version_key(ident.version)
    if old is None or new is None:
        if existing.version != ident.version:
            raise PolicyViolationError(
                f"cannot order versions {existing.version!r} (installed) and {ident.version!r} of {name}",
                subject=name,
                hint="--allow-downgrade installs it anyway",
            )
        return
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
    prefix = f"{root}/" if root else ""
    with ZipArchive.open(package, limits=limits.archive()) as archive:
        for entry in archive.entries:
            name = entry.name.rstrip("/")
            if name == root or not name.startswith(prefix):
                continue  # only the root itself: the manifest reader made sure everything else lies under it
            rel = name[len(prefix) :]
            parts = rel.split("/")
            if entry.is_dir:
                make_dirs(dest, parts)
                continue
            parent = make_dirs(dest, parts[:-1])
            files[rel] = write_new_file(parent / parts[-1], archive.iter_chunks(entry), executable=False)
    return files


def _aside(path: Path) -> Path | None:
    """Move ``path`` out of the way (to a hidden sibling) and return where it went; ``None`` if absent."""
    if not (path.exists() or path.is_symlink()):
        return None
    moved = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    os.rename(path, moved)
    return moved


def _commit(plugins_dir: Path, name: str, tree_tmp: Path, staging: Path, stage: Callable[[str], None]) -> None:
    """Swap the new tree and store entry in; on any failure put the old ones back."""
    target = plugins_dir / name
    store = store_root(plugins_dir) / name
    old_tree = old_store = None
    tree_in = store_in = False
    try:
        old_tree = _aside(target)
        os.rename(tree_tmp, target)
        tree_in = True
        stage("swapped")
        store.parent.mkdir(parents=True, exist_ok=True)
        old_store = _aside(store)
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
    _rmtree(old_tree)
    _rmtree(old_store)


# -- list, check, remove ----------------------------------------------------------------------------------------


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
        return {
            "name": self.name,
            "version": self.version,
            "ok": self.ok,
            "status": self.status,
            "reason": self.reason.value if self.reason else None,
            "message": self.message,
            "subject": self.subject,
        }


def _hash_path(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


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
        result = _bind_claimed_name(result, record.name)
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
    with _locked(plugins_dir, keep=False):  # a check leaves nothing behind that was not there
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
    with _locked(plugins_dir):
        record = read_record(plugins_dir, name)
        if record is None:
            raise UsageError(f"{name} is not installed in {plugins_dir}", subject=name)
        store = _aside(store_root(plugins_dir) / name)
        tree = _aside(plugins_dir / name)
        _rmtree(tree)
        _rmtree(store)
        return record


__all__ = [
    "DEFAULT_HOST_LIMITS",
    "CheckOutcome",
    "HostLimits",
    "check_installed",
    "install_package",
    "list_installed",
    "remove_plugin",
    "verify_package",
    "version_key",
]
