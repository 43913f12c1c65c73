"""Progress bars: shown on a terminal for inputs over 64 MiB, silenced by --quiet, never on a pipe.

The commands run through the real console script with stderr on a pseudo-terminal, as a person would see them.
"""

from __future__ import annotations

import os
import pty
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIGNERY = str(ROOT / ".venv" / "bin" / "signery")
BIG = (64 << 20) + (1 << 20)


def on_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run signery with stderr on a pseudo-terminal; return its exit code and what the terminal showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [SIGNERY, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=120), shown.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("progress")
    env = {**os.environ, "SIGNERY_HOME": str(d / "home")}
    subprocess.run([SIGNERY, "keygen", "k"], cwd=d, check=True, capture_output=True, env=env)
    with (d / "big.bin").open("wb") as fh:
        fh.truncate(BIG)  # sparse: the bar is about size, not content
    with (
        zipfile.ZipFile(d / "big.zip", "w", zipfile.ZIP_STORED) as zf,
        zf.open("payload.bin", "w", force_zip64=True) as out,
    ):
        for _ in range(BIG >> 20):
            out.write(bytes(1 << 20))
    return d


@pytest.mark.parametrize("subject", ["big.bin", "big.zip"])
def test_sign_and_verify_show_a_bar_on_a_terminal_and_not_with_quiet(big: Path, subject: str) -> None:
    code, shown = on_terminal("sign", subject, "--key", "k.private.pem", "--in-place", cwd=big)
    assert code == 0 and "signing" in shown, shown
    code, shown = on_terminal("verify", subject, "--key", "k.public.pem", cwd=big)
    assert code == 0 and f"verifying {subject}" in shown, shown
    code, shown = on_terminal("verify", subject, "--key", "k.public.pem", "--quiet", cwd=big)
    assert code == 0 and "verifying" not in shown, shown


def test_no_bar_on_a_pipe(big: Path) -> None:
    r = subprocess.run(
        [SIGNERY, "verify", "big.bin", "--key", "k.public.pem"], cwd=big, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and "verifying" not in r.stderr


@pytest.mark.parametrize(
    ("fmt", "keygen", "subject", "signed"),
    [
        ("dify", ["--format", "dify"], "big.zip", "big.signed.zip"),
        (
            "openpgp",
            ["--format", "openpgp", "--algorithm", "ed25519", "--uid", "P <p@example.org>"],
            "big.bin",
            "big.bin",
        ),
    ],
)
def test_dify_and_openpgp_show_a_bar_too(big: Path, fmt: str, keygen: list[str], subject: str, signed: str) -> None:
    subprocess.run([SIGNERY, "keygen", fmt, *keygen], cwd=big, check=True, capture_output=True)
    private, public = sorted(p.name for p in big.glob(f"{fmt}.p*"))
    code, shown = on_terminal("sign", subject, "--format", fmt, "--key", private, cwd=big)
    assert code == 0 and f"signing {subject}" in shown, shown
    code, shown = on_terminal("verify", signed, "--format", fmt, "--key", public, cwd=big)
    assert code == 0 and f"verifying {signed}" in shown, shown
    code, shown = on_terminal("verify", signed, "--key", public, cwd=big)  # the format found by itself
    assert code == 0 and f"verifying {signed}" in shown, shown
    code, shown = on_terminal("verify", signed, "--format", fmt, "--key", public, "-q", cwd=big)
    assert code == 0 and "verifying" not in shown, shown
