"""Streaming digests against hashlib and blake3, for empty, small and multi-slice files, one or many algorithms."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery.digests import DIGEST_ALGORITHMS, MAP_MIN, WINDOW, MultiHasher, check_algorithm, hash_bytes, hash_file
from signery.errors import UsageError


def reference(data: bytes) -> dict[str, bytes]:
    return {
        "sha256": hashlib.sha256(data).digest(),
        "sha512": hashlib.sha512(data).digest(),
        "blake3": blake3.blake3(data).digest(),
    }


@pytest.mark.parametrize("size", [0, 1, 4095, MAP_MIN - 1, MAP_MIN, MAP_MIN + 1, WINDOW, 2 * WINDOW + 12345])
def test_hash_file_matches_references_for_all_sizes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    want = reference(data)
    seen: list[int] = []
    got = hash_file(f, DIGEST_ALGORITHMS, progress=seen.append)
    assert got == want
    assert sum(seen) == size
    for alg in DIGEST_ALGORITHMS:
        assert hash_file(f, [alg]) == {alg: want[alg]}
        assert hash_bytes(data, alg) == want[alg]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=5000), algs=st.lists(st.sampled_from(DIGEST_ALGORITHMS), min_size=1, max_size=4))
def test_any_data_any_algorithm_combination(tmp_path: Path, data: bytes, algs: list[str]) -> None:
    f = tmp_path / "g.bin"
    f.write_bytes(data)
    want = reference(data)
    got = hash_file(f, algs)
    assert list(got) == list(dict.fromkeys(algs))
    assert all(got[a] == want[a] for a in algs)
    m = MultiHasher(algs)
    for i in range(0, len(data), 777):
        m.update(memoryview(data)[i : i + 777])
    assert m.digests() == got


def test_unknown_or_no_algorithm_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    for bad in ("md5", "sha1", "SHA256", ""):
        with pytest.raises(UsageError):
            check_algorithm(bad)
        with pytest.raises(UsageError):
            hash_file(f, [bad])
    with pytest.raises(UsageError):
        MultiHasher([])


def test_resident_memory_stays_flat_while_hashing_a_large_file(tmp_path: Path) -> None:
    # Mapped windows are released as they are hashed: resident memory grows by about one window, not the file.
    import subprocess
    import sys

    f = tmp_path / "big.bin"
    with f.open("wb") as fh:
        for _ in range(8):
            fh.write(os.urandom(WINDOW))
    script = (
        "import resource, sys; from signery.digests import hash_file; "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "hash_file(sys.argv[1], ['sha256', 'blake3']); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)"
    )
    grown_kib = int(subprocess.run([sys.executable, "-c", script, str(f)], capture_output=True, check=True).stdout)
    assert grown_kib * 1024 < 2 * WINDOW, f"RSS grew by {grown_kib} KiB hashing an {8 * WINDOW >> 20} MiB file"
