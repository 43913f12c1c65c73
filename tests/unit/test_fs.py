"""Atomic writes: the old file or nothing, never half of one; "do not overwrite" holds even against a racing writer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from signery._fs import atomic_write_bytes, atomic_writer
from signery.errors import UsageError


def test_failed_write_leaves_the_old_file_and_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "trust.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["trust.json"]


def test_private_files_are_created_with_their_mode(tmp_path: Path) -> None:
    target = tmp_path / "k.private.pem"
    atomic_write_bytes(target, b"secret", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_no_overwrite_refuses_a_file_that_appears_during_the_write(tmp_path: Path) -> None:
    """Another writer creates the file between our start and our publish: theirs survives, ours is refused."""
    target = tmp_path / "alice.private.pem"
    with pytest.raises(UsageError), atomic_writer(target, mode=0o600, overwrite=False) as fh:
        fh.write(b"ours")
        target.write_bytes(b"theirs")  # the racing writer
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.private.pem"]


def test_no_overwrite_creates_when_absent(tmp_path: Path) -> None:
    target = tmp_path / "new.pem"
    atomic_write_bytes(target, b"data", overwrite=False)
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.pem"]
