"""The C accelerator rebuilt with AddressSanitizer and UndefinedBehaviorSanitizer, under the hostile-archive tests.

The accelerator reads attacker-controlled bytes in C, so its differential tests (tests/unit/test_fastzip.py) also
run against a sanitized build: any out-of-bounds read, use after free or undefined arithmetic stops the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from support import IN_CI, require_tool

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "signery" / "_fastzip.c"

RUNNER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("signery._fastzip", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["signery._fastzip"] = module
spec.loader.exec_module(module)
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[2:]]))
"""


def _runtime(cc: str, name: str) -> str:
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()
    if not os.path.isabs(path):
        if IN_CI:
            pytest.fail(f"{name} is not installed with {cc}")
        pytest.skip(f"{name} is not installed with {cc}")
    return path


@pytest.mark.parametrize("inflate", ["libdeflate", "zlib"])  # the CRC-32 is libdeflate's or zlib's
def test_differential_tests_pass_under_sanitizers(tmp_path: Path, inflate: str) -> None:
    cc = require_tool("gcc")
    asan, ubsan = _runtime(cc, "libasan.so"), _runtime(cc, "libubsan.so")
    built = tmp_path / f"_fastzip{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = ["-DHAVE_LIBDEFLATE"] if inflate == "libdeflate" else []
    libs = ["-ldeflate", "-lz", "-lcrypto"] if inflate == "libdeflate" else ["-lz", "-lcrypto"]
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-std=c11", *flags, f"-I{sysconfig.get_paths()['include']}", str(SOURCE),
         *libs, "-o", str(built)],
        check=True,
    )  # fmt: skip
    env = {
        **os.environ,
        "LD_PRELOAD": f"{asan}:{ubsan}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",  # CPython's own allocations are not ours to judge
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    tests = [str(ROOT / "tests" / "unit" / "test_fastzip.py")]
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, str(built), *tests], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert " passed" in r.stdout
