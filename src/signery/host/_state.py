"""The plugins directory's private state: the lock every operation holds, and moving trees out of the way.

``DIR/.signery/lock`` serialises installs, removals and checks. What an operation created (the plugins directory
and its parents, ``.signery/``, the lock file) is removed again when it fails, so a refused operation leaves no
trace; the lock file is unlinked while still held, and a process waiting for it starts over on a fresh one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import EnvironmentFailure
from .records import STATE_DIR

_LOCK_ATTEMPTS = 20  # a waiting process starts over when the lock's creator failed and removed it


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
def locked(plugins_dir: Path, *, keep: bool = True) -> Iterator[Path]:
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


def aside(path: Path) -> Path | None:
    """Move ``path`` out of the way (to a hidden sibling) and return where it went; ``None`` if absent."""
    if not (path.exists() or path.is_symlink()):
        return None
    moved = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    os.rename(path, moved)
    return moved


def rmtree(path: Path | None) -> None:
    """Remove the tree at ``path`` (nothing for ``None``), ignoring what is already gone."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


__all__ = ["aside", "locked", "rmtree"]
