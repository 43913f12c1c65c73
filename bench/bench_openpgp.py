"""OpenPGP detached signatures on a 1 GiB file: `signery sign --format openpgp` against `gpg --detach-sign`.

    .venv/bin/python bench/bench_openpgp.py [--size-mib 1024] [--alg ed25519|rsa3072|nistp256] [--repeat 5]
                                            [--gpg-digest SHA256|SHA512|...] [--no-verify]

Target: signing <= 0.75x `gpg --detach-sign` of the same file with the same key, in the same run.

Every figure is wall time, with the CPU time (user + system) beside it for information: on a shared machine the
wall time also holds the waits for a CPU. gpg's CPU time leaves out gpg-agent, which makes the one signature.

Setup: a fresh GNUPGHOME and a key generated for the bench (no passphrase, so neither side pays an unlock), exported
for signery. Both sign the same file, already in the page cache, each in a fresh process from the command line.
gpg signs with the digest it picks by default (or --gpg-digest); signery with its default, the faster of SHA-256
and SHA-512 on this CPU. Each side's digest is read back from its signature and printed. Every figure is the median
of --repeat runs after one warm-up run (which also starts gpg-agent); gpg and signery run alternately, so the noise
of a shared machine falls on both alike. The verify rows (`signery verify` vs `gpg --verify`, each side's own
signature, and signery verifying gpg's) are for information; each signature is also checked by the other tool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
SIGNERY = [str(BIN / "signery")]
TARGET = 0.75


def run(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one process; a failure stops the bench."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


@dataclass
class Pair:
    ours: float  # median wall seconds
    peer: float
    ours_cpu: float  # median CPU seconds
    peer_cpu: float
    rss: int  # signery's peak, KiB


def paired(ours: list[str], peer: list[str], repeat: int, env: dict[str, str]) -> Pair:
    """Medians of signery's and the peer's command, after a warm-up of each, run alternately; signery's peak RSS."""
    run(peer, env=env)
    run(ours, env=env)
    mine: list[tuple[float, int, float]] = []
    theirs: list[tuple[float, int, float]] = []
    for _ in range(repeat):
        theirs.append(run(peer, env=env))
        mine.append(run(ours, env=env))
    return Pair(
        statistics.median(m[0] for m in mine),
        statistics.median(t[0] for t in theirs),
        statistics.median(m[2] for m in mine),
        statistics.median(t[2] for t in theirs),
        max(m[1] for m in mine),
    )


def digest_of(sig: Path) -> str:
    """The hash algorithm a detached signature file names (read with signery's parser)."""
    from signery.formats.openpgp import read_signatures

    return read_signatures(sig)[0].hash_name


def row(label: str, ours: float, peer: float, target: float | None = None) -> bool:
    ratio = ours / peer
    ok = target is None or ratio <= target
    verdict = f"(target <= {target:.2f}x) {'PASS' if ok else 'MISS'}" if target is not None else "(information)"
    print(f"{label:<44} signery {ours:7.3f}s  gpg {peer:7.3f}s  ratio {ratio:5.2f}x {verdict}")
    return ok


def cpu_row(label: str, p: Pair) -> None:
    print(f"{label:<44} signery {p.ours_cpu:7.3f}s  gpg {p.peer_cpu:7.3f}s  ratio {p.ours_cpu / p.peer_cpu:5.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--alg", choices=["ed25519", "rsa3072", "nistp256"], default="ed25519")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gpg-digest", metavar="ALGO", help="gpg --digest-algo ALGO instead of gpg's default")
    ap.add_argument("--no-verify", action="store_true", help="time signing only")
    args = ap.parse_args()
    if not shutil.which("gpg"):
        raise SystemExit("gpg is needed as the peer (apt-get install gnupg)")
    work = Path(tempfile.mkdtemp(prefix="signery-bench-openpgp-"))
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    env = dict(os.environ, SIGNERY_HOME=str(work / "signery-home"))
    gpg = ["gpg", "--homedir", str(home), "--batch", "--yes", "--quiet", "--pinentry-mode", "loopback"]
    try:
        subprocess.run(
            [*gpg, "--passphrase", "", "--quick-gen-key", "Bench <bench@example.org>", args.alg, "sign", "never"],
            check=True,
            capture_output=True,
        )
        secret, public = work / "key.sec", work / "key.asc"
        secret.write_bytes(subprocess.run([*gpg, "--export-secret-keys"], check=True, capture_output=True).stdout)
        public.write_bytes(subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout)
        big = work / "big.bin"
        with big.open("wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())  # no writeback of this file may overlap the measurements
        gpg_sig, our_sig = work / "gpg.sig", work / "signery.sig"
        gpg_sign = [*gpg, *(["--digest-algo", args.gpg_digest] if args.gpg_digest else []), "--output", str(gpg_sig)]
        gpg_sign += ["--detach-sign", str(big)]
        our_sign = [*SIGNERY, "sign", str(big), "--format", "openpgp", "--key", str(secret), "-q", "--force"]
        our_sign += ["--output", str(our_sig)]
        version = subprocess.run(["gpg", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        print(
            f"# {args.size_mib} MiB file, {os.cpu_count()} cores, gpg-made {args.alg} key, median of {args.repeat} "
            f"runs, fresh process each; {version}"
        )
        sign = paired(our_sign, gpg_sign, args.repeat, env)
        ours_digest, gpg_digest = digest_of(our_sig), digest_of(gpg_sig)
        how = f"gpg --digest-algo {args.gpg_digest}" if args.gpg_digest else "gpg's default"
        print(f"# digests: signery {ours_digest} (its default: fastest on this CPU), gpg {gpg_digest} ({how})")
        ok = row(f"sign ({ours_digest} vs {gpg_digest}), wall", sign.ours, sign.peer, TARGET)
        cpu_row("sign, CPU user+system (information)", sign)
        print(f"{'peak RSS of signery sign':<44} {sign.rss / 1024:7.1f} MiB")
        if ours_digest != gpg_digest and not args.gpg_digest:  # the same digest on both sides, for information
            same = [
                *gpg,
                "--digest-algo",
                ours_digest,
                "--output",
                str(work / "gpg-same.sig"),
                "--detach-sign",
                str(big),
            ]
            like = paired(our_sign, same, args.repeat, env)
            row(f"sign, gpg --digest-algo {ours_digest} too, wall", like.ours, like.peer)
        # each tool accepts the other's signature (untimed)
        subprocess.run([*gpg, "--import", str(public)], check=True, capture_output=True)
        subprocess.run([*gpg, "--verify", str(our_sig), str(big)], check=True, capture_output=True)
        our_verify = [*SIGNERY, "verify", str(big), "--key", str(public), "-q", "--signature"]
        subprocess.run([*our_verify, str(gpg_sig)], check=True, capture_output=True, env=env)
        if not args.no_verify:
            gpg_verify = [*gpg, "--verify", str(gpg_sig), str(big)]
            verify = paired([*our_verify, str(our_sig)], gpg_verify, args.repeat, env)
            row("verify, each its own signature, wall", verify.ours, verify.peer)
            cpu_row("verify, CPU user+system", verify)
            theirs = paired([*our_verify, str(gpg_sig)], gpg_verify, 1, env)
            row("verify gpg's signature (1 run), wall", theirs.ours, theirs.peer)
        print("PASS" if ok else "MISS", f"sign <= {TARGET:.2f}x gpg --detach-sign")
        return 0 if ok else 1
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
