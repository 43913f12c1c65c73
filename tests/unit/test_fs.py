"""signery._internal.files: atomic writes (the old file or nothing, never half of one; "do not overwrite" holds even
against a racing writer), bounded reads (one wording, file and limit named), and staged writes (hashed while they
stream, checked against what was announced, renamed; nothing left on failure)."""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path

import pytest

from signery import _fs
from signery._internal.files import StagedFile, atomic_write_bytes, atomic_writer, read_bounded, staged_file
from signery.errors import ConfigError, MalformedError, Reason, TamperedError, UnsafeArchiveError, UsageError


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


def test_the_old_module_still_exports_the_writers() -> None:
    assert _fs.atomic_writer is atomic_writer and _fs.atomic_write_bytes is atomic_write_bytes


# -- one bounded read -----------------------------------------------------------------------------------------------


def test_read_bounded_reads_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100, what="policy file") == b"x" * 100


def test_read_bounded_refuses_one_byte_more_naming_file_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"x" * 101)
    with pytest.raises(MalformedError) as err:
        read_bounded(path, 100, what="key file")
    assert err.value.message == f"key file {path} is larger than 100 bytes" and err.value.subject == str(path)
    assert err.value.reason == Reason.MALFORMED


def test_read_bounded_of_an_endless_file_stops_at_the_limit() -> None:
    with pytest.raises(MalformedError, match="larger than 4096 bytes"):
        read_bounded(Path("/dev/zero"), 4096, what="trust store")


def test_read_bounded_raises_the_class_asked_for_and_leaves_os_errors_to_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_bytes(b"{}" * 10)
    with pytest.raises(ConfigError, match=r"install record .* is larger than 5 bytes"):
        read_bounded(path, 5, what="install record", error=ConfigError)
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "absent", 5, what="install record")


def test_the_config_readers_share_the_wording(tmp_path: Path) -> None:
    """policy, trust store and install record: one message shape, still a configuration error (exit 3)."""
    from signery.host.records import MAX_RECORD_BYTES, read_record, store_root
    from signery.policy import MAX_POLICY_BYTES, load_policy
    from signery.trust import MAX_TRUST_FILE_BYTES, TrustStore

    policy = tmp_path / "policy.toml"
    policy.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(ConfigError, match=f"policy file {policy} is larger than {MAX_POLICY_BYTES} bytes"):
        load_policy(policy, env={})
    store = TrustStore(tmp_path / "trust")
    store.directory.mkdir()
    store.path.write_bytes(b" " * (MAX_TRUST_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match=f"trust store {store.path} is larger than {MAX_TRUST_FILE_BYTES} bytes"):
        store.load()
    record = store_root(tmp_path / "plugins") / "hello" / "record.json"
    record.parent.mkdir(parents=True)
    with record.open("wb") as fh:
        fh.truncate(MAX_RECORD_BYTES + 1)  # sparse: the read stops after one byte more than the bound
    with pytest.raises(ConfigError, match=f"install record {record} is larger than {MAX_RECORD_BYTES} bytes"):
        read_record(tmp_path / "plugins", "hello")


def test_key_files_share_the_wording_and_stay_malformed(tmp_path: Path) -> None:
    from signery.keys import MAX_KEY_FILE_BYTES, read_key_file
    from signery.trust import load_trusted_key_file

    big = tmp_path / "big.pem"
    big.write_bytes(b"-" * (MAX_KEY_FILE_BYTES + 1))
    for read in (read_key_file, load_trusted_key_file):
        with pytest.raises(MalformedError, match=f"key file {big} is larger than {MAX_KEY_FILE_BYTES} bytes"):
            read(big)
    with pytest.raises(UsageError, match="does not exist"):
        read_key_file(tmp_path / "absent.pem")


# -- one staged write -----------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_staged_file_hashes_checks_and_renames(tmp_path: Path) -> None:
    data = b"package bytes" * 1000
    with staged_file(tmp_path, sha256=_sha256(data), size=len(data), what="demo@1.0.0") as out:
        out.write(data[:10])
        out.copy_from(io.BytesIO(data[10:]))
        assert out.path.parent == tmp_path and out.path.name.startswith(".")  # a hidden temporary beside the target
        final = out.commit("demo-1.0.0.zip")
    assert final == tmp_path / "demo-1.0.0.zip" and final.read_bytes() == data
    assert out.sha256 == _sha256(data) and out.size == len(data) and out.state == "committed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-1.0.0.zip"]
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_a_commit_without_a_name_is_named_by_its_digest(tmp_path: Path) -> None:
    staged = StagedFile(tmp_path, limit=100, mode=0o644)
    staged.write(b"blob")
    assert staged.commit() == tmp_path / _sha256(b"blob")
    assert stat.S_IMODE((tmp_path / _sha256(b"blob")).stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("sent", "announced", "message"),
    [
        (b"0123456789!", b"0123456789", "more than the 10 bytes the index announced"),
        (b"012345678", b"0123456789", "9 bytes, the index announced 10"),
        (b"0123456788", b"0123456789", "differs from the"),
    ],
)
def test_more_fewer_or_other_bytes_than_announced_are_tampered_and_leave_nothing(
    tmp_path: Path, sent: bytes, announced: bytes, message: str
) -> None:
    with (
        pytest.raises(TamperedError, match=message) as err,
        staged_file(
            tmp_path, sha256=_sha256(announced), size=len(announced), what="x.zip", announced_by="the index"
        ) as out,
    ):
        out.write(sent)
    assert err.value.subject == "x.zip" and out.state == "discarded"
    assert list(tmp_path.iterdir()) == []


def test_over_the_limit_is_refused_with_the_class_asked_for(tmp_path: Path) -> None:
    staged = StagedFile(tmp_path, limit=8, what="upload", limit_error=UnsafeArchiveError)
    staged.write(b"12345678")
    with pytest.raises(UnsafeArchiveError, match="upload is larger than 8 bytes"):
        staged.write(b"9")
    assert list(tmp_path.iterdir()) == []
    staged.discard()  # again: a no-op


def test_any_failure_in_the_body_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staged_file(tmp_path) as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_an_uncommitted_file_stays_checked_at_its_temporary_path(tmp_path: Path) -> None:
    """For callers that land several files at once (the registry client, mirror bundles): they rename it."""
    with staged_file(tmp_path, sha256=_sha256(b"sig"), size=3) as out:
        out.write(b"sig")
    assert out.state == "finished" and out.path.read_bytes() == b"sig" and out.path.name.endswith(".part")
    with pytest.raises(ValueError, match="finished"):
        out.write(b"more")


def test_commit_replaces_an_existing_file_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"old")
    staged = StagedFile(tmp_path)
    staged.write(b"new")
    staged.commit("x")
    assert (tmp_path / "x").read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["x"]
