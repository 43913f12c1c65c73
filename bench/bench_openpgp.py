"""OpenPGP detached signatures on a large file: signery vs gpg, same key type, in the same run.

Usage: .venv/bin/python bench/bench_openpgp.py [--size-mib 1024] [--alg ed25519|rsa3072]

Measures wall time of signing and verifying (each in a fresh process, as a user runs them) and the peak RSS of
the signery processes, and prints each beside gpg's as a ratio (signery / gpg; below 1 is faster).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASS = "bench"  # noqa: S105 - a throwaway key in a temporary GNUPGHOME
ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

SIGN = """
import sys, resource
from pathlib import Path
from signery import openpgp
from signery.formats import openpgp as fmt
signer = openpgp.load_signer(Path(sys.argv[1]).read_bytes(), passphrase=b"bench", source=sys.argv[1])
fmt.sign(Path(sys.argv[2]), signer, output=Path(sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

VERIFY = """
import sys, resource
from pathlib import Path
from signery.formats import openpgp as fmt
from signery.trust import TrustSet, load_trusted_key_file
trust = TrustSet([load_trusted_key_file(Path(sys.argv[1])).key])
result = fmt.verify(Path(sys.argv[2]), trust=trust, signature=Path(sys.argv[3]))
assert result.verified, result.to_dict()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')}")
    return dt, proc.stdout.decode().strip()


def child_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--alg", choices=["ed25519", "rsa3072"], default="ed25519")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("gpg"):
        raise SystemExit("gpg is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="bench-openpgp-"))
    try:
        home = tmp / "gnupg"
        home.mkdir(mode=0o700)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", PASS]
        subprocess.run(
            [*gpg, "--quick-gen-key", "Bench <b@example.org>", args.alg, "sign", "never"],
            check=True,
            capture_output=True,
        )
        secret = tmp / "key.gpg"
        secret.write_bytes(subprocess.run([*gpg, "--export-secret-keys"], check=True, capture_output=True).stdout)
        public = tmp / "key.asc"
        public.write_bytes(subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout)
        data = tmp / "big.bin"
        block = os.urandom(1 << 20)
        with data.open("wb") as fh:
            for _ in range(args.size_mib):
                fh.write(block)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        print(f"file: {args.size_mib} MiB, key: gpg-made {args.alg}, best of {args.runs} runs, fresh process each")

        def best(cmd: list[str]) -> tuple[float, str]:
            return min((timed(cmd, env) for _ in range(args.runs)), key=lambda r: r[0])

        # gpg first (warms the page cache for both), then signery.
        timed([*gpg, "--output", str(tmp / "gpg.sig"), "--detach-sign", str(data)])
        g_sign, _ = best([*gpg, "--output", str(tmp / "gpg.sig"), "--detach-sign", str(data)])
        s_sign, s_sign_rss = best([PY, "-c", SIGN, str(secret), str(data), str(tmp / "signery.sig")])
        g_ver, _ = best([*gpg, "--verify", str(tmp / "gpg.sig"), str(data)])
        g_ver_ours, _ = best([*gpg, "--verify", str(tmp / "signery.sig"), str(data)])
        s_ver, s_ver_rss = best([PY, "-c", VERIFY, str(public), str(data), str(tmp / "signery.sig")])
        s_ver_gpgsig, _ = best([PY, "-c", VERIFY, str(public), str(data), str(tmp / "gpg.sig")])

        def row(what: str, ours: float, peer: float) -> None:
            print(f"{what:<52} signery {ours:6.2f} s   gpg {peer:6.2f} s   ratio {ours / peer:.2f}x")

        row("sign (signery SHA-512 vs gpg --detach-sign)", s_sign, g_sign)
        row("verify own signature (vs gpg --verify of gpg's)", s_ver, g_ver)
        row("verify the same signery signature", s_ver, g_ver_ours)
        row("verify the same gpg signature", s_ver_gpgsig, g_ver)
        print(
            f"peak RSS signery sign: {int(s_sign_rss) / 1024:.1f} MiB, verify: {int(s_ver_rss) / 1024:.1f} MiB "
            f"(limit 100 MB); largest child overall: {child_rss_mib():.1f} MiB"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
