"""Run the real archive readers on a file and compare what each of them sees (import as ``from archive_readers ...``).

signery promises that a package it calls valid is seen the same way by every mainstream extractor. This module
turns that promise into something a test can check: every reader below produces a *listing*, a frozenset of
:class:`Entry`, and :func:`assert_all_agree` demands that all of them succeed and equal what signery's own reader
lists (:func:`signery_listing`).

Readers (each ``(path, tmp) -> frozenset[Entry]``, raising :class:`ReaderFailed`):

ZIP
    ``zipfile`` (Python, every member read in full, so its CRC-32 is checked), ``unzip`` (Info-ZIP, extracts),
    ``bsdtar`` (libarchive's seeking reader, which starts from the central directory), ``bsdtar-pipe`` (the same
    archive on stdin: libarchive's streaming reader, which walks the local headers), ``7z``, and ``go-zip``
    (Go's ``archive/zip`` through ``tests/readers/golister``).
tar.gz
    ``tarfile`` (Python, ``r:gz``), ``gnutar``, ``bsdtar`` and ``go-tar`` (Go's ``compress/gzip`` + ``archive/tar``).

Extractors write into a fresh directory that is then walked without following links (:func:`walk`). They run
with ``umask 022``, ``LC_ALL=C.UTF-8``, no controlling terminal (so no password prompt can wait), and a timeout.
An extractor *fails* when it exits non-zero; ``7z`` also when it reports a warning or an error (it exits 0 for
"data after the end of archive"), and the tar tools also when they write anything to stderr (GNU tar and
libarchive report data problems such as unknown headers or lone zero blocks as warnings and exit 0).

Listing rules, the same for every reader:

- ``name``: the path with ``/`` separators, without leading ``./`` and trailing ``/``; extracted names are the
  file system's bytes decoded as UTF-8 with ``surrogateescape`` (as :func:`os.fsdecode` does), so a name that
  one reader decodes as CP437 and another writes as raw bytes differs, as it does on disk.
- ``type``: ``file``, ``dir``, ``symlink`` or ``other`` (devices, FIFOs, sockets, unknown ZIP file types).
  A tar hard link counts as a ``file`` with its target's content: that is what extracting it produces.
- ``mode_class`` (see :func:`mode_class`): ``x`` for a file with any execute bit, ``-`` for one without,
  ``d`` for a directory, ``l`` for a symbolic link, ``?`` for anything else; then ``s`` when setuid or setgid
  is set, ``t`` when sticky, ``w`` when world-writable (links take no suffix). A ZIP entry without a Unix mode
  (mode 0) is ``-``.
- ``sha256``: hex digest of a file's content, of a link's target (the path string), ``None`` otherwise.
- Directories: a listing holds the non-directory entries plus only those directories that have nothing beneath
  them. Extractors create parent directories whether or not the archive lists them, so listing them would only
  compare how archives were written, not what lands on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Literal, NamedTuple

from support import require_tool

Kind = Literal["zip", "tar"]
Reader = Callable[[Path, Path], frozenset["Entry"]]

GOLISTER_SOURCE = Path(__file__).resolve().parent / "readers" / "golister"
TIMEOUT = 60.0  # seconds per reader process
_NO_PASSWORD = "signery-test-no-password"  # given to tools that would otherwise ask for one


class Entry(NamedTuple):
    """One thing a reader sees in an archive (see the module docstring for each field's rules)."""

    name: str
    type: str  # "file" | "dir" | "symlink" | "other"
    mode_class: str
    sha256: str | None

    def brief(self) -> str:
        digest = self.sha256[:12] if self.sha256 else "-"
        return f"{self.name!r} {self.type} {self.mode_class} {digest}"


class ReaderFailed(Exception):
    """A reader refused the archive, crashed, timed out or warned about its data."""

    def __init__(self, reader: str, message: str) -> None:
        super().__init__(f"{reader}: {message}")
        self.reader = reader
        self.message = message


# -- listings -------------------------------------------------------------------------------------------------------


def mode_class(type_: str, mode: int) -> str:
    """The comparable part of a Unix ``mode`` for an entry of ``type_``: ``x``/``-``/``d``/``l``/``?`` + suffixes."""
    if type_ == "symlink":
        return "l"
    base = {"file": "x" if mode & 0o111 else "-", "dir": "d"}.get(type_, "?")
    if mode & (stat.S_ISUID | stat.S_ISGID):
        base += "s"
    if mode & stat.S_ISVTX:
        base += "t"
    if mode & stat.S_IWOTH:
        base += "w"
    return base


def normalise_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if name not in (".", "") else ""


def listing(entries: Iterable[Entry]) -> frozenset[Entry]:
    """Apply the naming and directory rules: normalised names, and only directories with nothing beneath them."""
    named = [e._replace(name=normalise_name(e.name)) for e in entries]
    named = [e for e in named if e.name]
    parents = {"/".join(e.name.split("/")[:i]) for e in named for i in range(1, e.name.count("/") + 1)}
    return frozenset(e for e in named if not (e.type == "dir" and e.name in parents))


def _entry(name: str, type_: str, mode: int, sha256: str | None) -> Entry:
    return Entry(name, type_, mode_class(type_, mode), sha256)


def _sha256_of(fh: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def walk(root: Path) -> frozenset[Entry]:
    """The listing of an extraction directory: :func:`os.lstat` only, links are never followed."""
    found: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                target = os.fsencode(os.readlink(full))
                found.append(_entry(rel, "symlink", st.st_mode, hashlib.sha256(target).hexdigest()))
            elif stat.S_ISDIR(st.st_mode):
                found.append(_entry(rel, "dir", st.st_mode, None))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    found.append(_entry(rel, "file", st.st_mode, _sha256_of(fh)))
            else:
                found.append(_entry(rel, "other", st.st_mode, None))
    return listing(found)


# -- running tools --------------------------------------------------------------------------------------------------

_ENV_OVERRIDES = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}


def _run(
    reader: str, cmd: list[str], *, stdin: IO[bytes] | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a reader's command; any non-zero exit is a :class:`ReaderFailed` with the tool's own words."""
    try:
        proc = subprocess.run(
            cmd,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            env={**os.environ, **_ENV_OVERRIDES, **(env or {})},
            umask=0o022,
            start_new_session=True,  # no controlling terminal: a tool that wants a password fails instead of waiting
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ReaderFailed(reader, f"timed out after {TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        said = _said(proc)
        raise ReaderFailed(reader, f"exit {proc.returncode}" + (f": {said}" if said else ""))
    return proc


def _said(proc: subprocess.CompletedProcess[bytes], limit: int = 400) -> str:
    text = (proc.stderr or b"").decode("utf-8", "replace").strip() or (proc.stdout or b"").decode(
        "utf-8", "replace"
    ).strip()
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit] + "..."


def _quiet_stderr(reader: str, proc: subprocess.CompletedProcess[bytes]) -> None:
    if proc.stderr.strip():
        raise ReaderFailed(reader, f"warned: {_said(proc)}")


def _extract(reader: str, tmp: Path, run: Callable[[Path], None]) -> frozenset[Entry]:
    """Run ``run(outdir)`` into a fresh directory under ``tmp``, list it, remove it.

    The output directory sits a few levels down so that a tool that lets ``../`` through writes inside ``tmp``
    (and what it wrote there is missing from its listing, which then differs).
    """
    base = Path(tempfile.mkdtemp(prefix=f"{reader}-", dir=tmp))
    out = base / "a" / "b" / "c" / "out"
    out.mkdir(parents=True)
    try:
        run(out)
        return walk(out)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- ZIP readers ----------------------------------------------------------------------------------------------------


def read_zipfile(path: Path, tmp: Path) -> frozenset[Entry]:
    """Python's :mod:`zipfile`: the central directory, each file and link read in full (CRC-32 checked)."""
    found: list[Entry] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if info.is_dir():
                    type_ = "dir"
                elif stat.S_ISLNK(mode):
                    type_ = "symlink"
                elif stat.S_IFMT(mode) in (0, stat.S_IFREG):
                    type_ = "file"
                else:
                    type_ = "other"
                digest = None
                if type_ in ("file", "symlink"):
                    with zf.open(info) as fh:
                        digest = _sha256_of(fh)
                found.append(_entry(info.filename, type_, mode, digest))
    except Exception as exc:  # whatever zipfile raises, it refused the archive
        raise ReaderFailed("zipfile", f"{type(exc).__name__}: {exc}") from None
    return listing(found)


_UNZIP_EXITS = {  # unzip(1), DIAGNOSTICS
    1: "warning",
    2: "generic error in the zipfile format",
    3: "severe error in the zipfile format",
    9: "not a zipfile",
    11: "no matching files",
    12: "invalid zip file (overlapping components)",
    51: "unexpected end of zipfile",
    80: "interrupted",
    81: "unsupported compression method, encryption or version needed",
    82: "no file decrypted: bad password",
}


def read_unzip(path: Path, tmp: Path) -> frozenset[Entry]:
    """Info-ZIP ``unzip -qq -o``: exit 1 is its warning (e.g. extra bytes), 2 and up errors; all are failures."""
    tool = require_tool("unzip")

    def run(out: Path) -> None:
        try:
            _run("unzip", [tool, "-qq", "-o", "-P", _NO_PASSWORD, "-d", str(out), str(path)])
        except ReaderFailed as failed:  # with -qq some refusals come with no words: say what the exit code means
            code = failed.message.removeprefix("exit ")
            if not code.isdigit() or int(code) not in _UNZIP_EXITS:
                raise
            raise ReaderFailed("unzip", f"{failed.message} ({_UNZIP_EXITS[int(code)]})") from None

    return _extract("unzip", tmp, run)


def _bsdtar(reader: str, path: Path, tmp: Path, *, pipe: bool) -> frozenset[Entry]:
    tool = require_tool("bsdtar")

    def run(out: Path) -> None:
        args = [tool, "-x", "--passphrase", _NO_PASSWORD, "-C", str(out), "-f"]
        if pipe:
            with path.open("rb") as fh:
                proc = _run(reader, [*args, "-"], stdin=fh)
        else:
            proc = _run(reader, [*args, str(path)])
        _quiet_stderr(reader, proc)

    return _extract(reader, tmp, run)


def read_bsdtar_zip(path: Path, tmp: Path) -> frozenset[Entry]:
    """libarchive on a seekable file: it reads the central directory, then each local header."""
    return _bsdtar("bsdtar", path, tmp, pipe=False)


def read_bsdtar_pipe(path: Path, tmp: Path) -> frozenset[Entry]:
    """libarchive on a pipe: the streaming reader, which trusts local headers and never sees the central directory."""
    return _bsdtar("bsdtar-pipe", path, tmp, pipe=True)


_7Z_TROUBLE = re.compile(r"\b(?:warnings?|errors?)\b", re.IGNORECASE)


def read_7z(path: Path, tmp: Path) -> frozenset[Entry]:
    """7-Zip ``7z x``: a non-zero exit, or a warning or error in its report (it exits 0 for some), is a failure."""
    tool = require_tool("7z")

    def run(out: Path) -> None:
        proc = _run("7z", [tool, "x", "-y", "-bd", f"-p{_NO_PASSWORD}", f"-o{out}", str(path)])
        report = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        trouble = [line.strip() for line in report.splitlines() if _7Z_TROUBLE.search(line)]
        if trouble:
            raise ReaderFailed("7z", "reported " + " | ".join(trouble)[:400])

    return _extract("7z", tmp, run)


def _golister_listing(reader: str, what: str, path: Path) -> frozenset[Entry]:
    try:
        proc = subprocess.run(
            [str(golister()), what, str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ReaderFailed(reader, f"timed out after {TIMEOUT:.0f} s") from None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise ReaderFailed(reader, f"exit {proc.returncode}, no JSON: {_said(proc)}") from None
    if proc.returncode != 0 or "error" in doc:
        raise ReaderFailed(reader, str(doc.get("error", f"exit {proc.returncode}")))
    # Go only reports modes; a Go program extracts with os.OpenFile(name, flags, mode), which the umask of the
    # extractors here (022) narrows. For an entry without a Unix mode (a FAT "made by", as Go itself writes) Go
    # reports 0666, which lands as 0644 like every other reader's default.
    found = [
        _entry(
            bytes.fromhex(e["name_hex"]).decode("utf-8", "surrogateescape"),
            e["type"],
            e["mode"] & ~0o022 if e["type"] in ("file", "dir") else e["mode"],
            e["sha256"],
        )
        for e in doc["entries"]
    ]
    return listing(found)


def read_go_zip(path: Path, tmp: Path) -> frozenset[Entry]:
    """Go's ``archive/zip`` (``zip.OpenReader``, every file read in full: Go checks the CRC-32)."""
    return _golister_listing("go-zip", "zip", path)


# -- tar.gz readers -------------------------------------------------------------------------------------------------


def read_tarfile(path: Path, tmp: Path) -> frozenset[Entry]:
    """Python's :mod:`tarfile` (``r:gz``), every regular file and hard link read in full."""
    found: list[Entry] = []
    try:
        with tarfile.open(path, mode="r:gz") as tf:
            for info in tf.getmembers():
                mode = info.mode & 0o7777
                if info.isdir():
                    found.append(_entry(info.name, "dir", mode, None))
                elif info.issym():
                    target = hashlib.sha256(os.fsencode(info.linkname)).hexdigest()
                    found.append(_entry(info.name, "symlink", mode, target))
                elif info.isreg() or info.islnk():
                    fh = tf.extractfile(info)
                    if fh is None:
                        raise ReaderFailed("tarfile", f"{info.name!r}: no data")
                    with fh:
                        found.append(_entry(info.name, "file", mode, _sha256_of(fh)))
                else:
                    found.append(_entry(info.name, "other", mode, None))
    except ReaderFailed:
        raise
    except Exception as exc:  # whatever tarfile or gzip raises, it refused the archive
        raise ReaderFailed("tarfile", f"{type(exc).__name__}: {exc}") from None
    return listing(found)


def read_gnutar(path: Path, tmp: Path) -> frozenset[Entry]:
    """GNU ``tar -xzf`` (as root it restores modes exactly); anything on stderr is a failure."""
    tool = require_tool("tar")

    def run(out: Path) -> None:
        _quiet_stderr("gnutar", _run("gnutar", [tool, "-xzf", str(path), "-C", str(out)]))

    return _extract("gnutar", tmp, run)


def read_bsdtar_tar(path: Path, tmp: Path) -> frozenset[Entry]:
    """libarchive's ``bsdtar -xf`` on the .tar.gz; anything on stderr is a failure."""
    return _bsdtar("bsdtar", path, tmp, pipe=False)


def read_go_tar(path: Path, tmp: Path) -> frozenset[Entry]:
    """Go's ``compress/gzip`` (multistream) + ``archive/tar``, as Mattermost reads plugin bundles."""
    return _golister_listing("go-tar", "tar", path)


ZIP_READERS: dict[str, Reader] = {
    "zipfile": read_zipfile,
    "unzip": read_unzip,
    "bsdtar": read_bsdtar_zip,
    "bsdtar-pipe": read_bsdtar_pipe,
    "7z": read_7z,
    "go-zip": read_go_zip,
}
TAR_READERS: dict[str, Reader] = {
    "tarfile": read_tarfile,
    "gnutar": read_gnutar,
    "bsdtar": read_bsdtar_tar,
    "go-tar": read_go_tar,
}


def readers(kind: Kind) -> dict[str, Reader]:
    return ZIP_READERS if kind == "zip" else TAR_READERS


def read_all(path: Path, tmp: Path, kind: Kind) -> dict[str, frozenset[Entry] | ReaderFailed]:
    """Every reader of ``kind`` on ``path`` (in parallel), by reader name: its listing, or how it failed.

    Missing tools skip the test (fail it in CI) through :func:`support.require_tool`, before anything runs.
    """
    chosen = readers(kind)
    for tool in ("unzip", "bsdtar", "7z", "go") if kind == "zip" else ("tar", "bsdtar", "go"):
        require_tool(tool)
    golister()  # built once, before the threads want it

    def one(reader: Reader) -> frozenset[Entry] | ReaderFailed:
        try:
            return reader(path, tmp)
        except ReaderFailed as failed:
            return failed

    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = {name: pool.submit(one, reader) for name, reader in chosen.items()}
        return {name: future.result() for name, future in futures.items()}


def describe_differences(
    results: Mapping[str, frozenset[Entry] | ReaderFailed], expected: frozenset[Entry], *, limit: int = 6
) -> list[str]:
    """One line per group of readers that differ from ``expected`` in the same way (empty when all agree)."""
    groups: dict[str, list[str]] = {}
    for name, got in results.items():
        if isinstance(got, ReaderFailed):
            line = f"failed: {got.message}"
        elif got == expected:
            continue
        else:
            missing = sorted(expected - got)
            extra = sorted(got - expected)
            parts = []
            if missing:
                more = f" (+{len(missing) - limit} more)" if len(missing) > limit else ""
                parts.append("missing " + ", ".join(e.brief() for e in missing[:limit]) + more)
            if extra:
                more = f" (+{len(extra) - limit} more)" if len(extra) > limit else ""
                parts.append("extra " + ", ".join(e.brief() for e in extra[:limit]) + more)
            line = "; ".join(parts)
        groups.setdefault(line, []).append(name)
    return [f"{'/'.join(names)}: {line}" for line, names in groups.items()]


def assert_all_agree(path: Path, tmp: Path, kind: Kind, expected: frozenset[Entry]) -> None:
    """Every reader of ``kind`` must read ``path`` and list exactly ``expected``."""
    results = read_all(path, tmp, kind)
    problems = describe_differences(results, expected)
    if problems:
        shown = ", ".join(e.brief() for e in sorted(expected))
        raise AssertionError(
            f"{path.name}: {len(problems)} way(s) the readers disagree with the expected listing [{shown}]:\n  "
            + "\n  ".join(problems)
        )


# -- signery's own view ---------------------------------------------------------------------------------------------


def signery_listing(path: Path, kind: Kind | None = None) -> frozenset[Entry]:
    """What signery's own reader lists for ``path``, by the same rules (raises signery's errors when it refuses)."""
    from signery.archive import is_zip

    if kind is None:
        kind = "zip" if is_zip(path) else "tar"
    return _signery_zip_listing(path) if kind == "zip" else _signery_tar_listing(path)


def _signery_zip_listing(path: Path) -> frozenset[Entry]:
    from signery.archive import ZipArchive

    found: list[Entry] = []
    with ZipArchive.open(path) as archive:
        for e in archive.entries:
            if e.is_dir:
                found.append(_entry(e.name, "dir", e.mode, None))
            else:  # mode 0: no Unix mode, which mode_class() reads as a plain file
                found.append(_entry(e.name, "file", e.mode, archive.hash_entry(e, ["sha256"])["sha256"].hex()))
    return listing(found)


def _signery_tar_listing(path: Path) -> frozenset[Entry]:
    """signery's tar reader: :func:`scan_tar` lists, :func:`extract_tar` writes and hashes (its installer's path).

    Kept apart on purpose: :mod:`signery.host.tarball` is being rewritten, and only this function knows its API.
    Modes are what signery's extraction writes: ``executable`` or not, never setuid, sticky or world-writable.
    """
    from signery.host.tarball import extract_tar, scan_tar

    scanned = scan_tar(path)
    with tempfile.TemporaryDirectory(prefix="signery-tar-") as dest:
        digests = extract_tar(path, Path(dest), scanned)
    found = [
        Entry(m.name, "dir", "d", None)
        if m.is_dir
        else Entry(m.name, "file", "x" if m.executable else "-", digests[m.name])
        for m in scanned.members
    ]
    return listing(found)


# -- the Go reader --------------------------------------------------------------------------------------------------


@functools.cache
def golister() -> Path:
    """``tests/readers/golister`` built with the local Go toolchain, standard library only, offline.

    Built once per source version into a directory under the system's temporary directory named by the sources'
    SHA-256 (reused by later sessions), with a private GOCACHE, GOPATH and HOME; a lock keeps concurrent
    sessions from building it twice at once.
    """
    go = require_tool("go")
    key = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        key.update(name.encode() + b"\0" + (GOLISTER_SOURCE / name).read_bytes() + b"\0")
    home = Path(tempfile.gettempdir()) / f"signery-golister-{key.hexdigest()[:24]}"
    binary = home / "golister"
    if binary.is_file():
        return binary
    home.mkdir(exist_ok=True)
    with (home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home / "home"),
            "GOCACHE": str(home / "gocache"),
            "GOPATH": str(home / "gopath"),
            "GOFLAGS": "-mod=mod",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
            "GO111MODULE": "on",
        }
        partial = home / f"golister.{os.getpid()}.partial"
        proc = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=GOLISTER_SOURCE,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise RuntimeError(f"building golister failed: {_said(proc, 2000)}")
        partial.replace(binary)
    return binary


__all__ = [
    "TAR_READERS",
    "ZIP_READERS",
    "Entry",
    "Kind",
    "ReaderFailed",
    "assert_all_agree",
    "describe_differences",
    "golister",
    "listing",
    "mode_class",
    "read_all",
    "readers",
    "signery_listing",
    "walk",
]
