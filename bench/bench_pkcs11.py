"""PKCS#11 benchmarks: signing through SoftHSM2 beside the same key type as a file key, and a 1 GiB file.

    .venv/bin/python bench/bench_pkcs11.py [--size-mib 1024] [--repeat 3] [--ed25519 2000] [--rsa 200]

Targets:
  per signature, Ed25519 and RSA-3072 (PSS):  PKCS11Signer <= 1.5x FileSigner
  1 GiB file: hash (signery.digests.hash_file, sha256) + sign_digest through SoftHSM2 (RSA-3072)
              <= 1.10x `openssl dgst -sha256` on the same file (wall, process start included for openssl)

The token is a throwaway SoftHSM2 token (its own SOFTHSM2_CONF and token directory). "raw" is the same
python-pkcs11 C_Sign call without signery around it: what SoftHSM2 itself costs, so the gap between raw and
PKCS11Signer is signery's own overhead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"


def per_call(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Median over ``repeat`` rounds of the seconds per call of ``n`` calls."""
    fn()
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t0) / n)
    return statistics.median(rounds)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ed25519", type=int, default=2000)
    ap.add_argument("--rsa", type=int, default=200)
    args = ap.parse_args()
    if not Path(MODULE).exists():
        print(f"SoftHSM2 is not installed: {MODULE} is absent")
        return 2
    root = Path(tempfile.mkdtemp(prefix="bench-pkcs11-"))
    try:
        (root / "tokens").mkdir()
        conf = root / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", PIN, "--so-pin", "5678"],
            check=True,
            capture_output=True,
        )
        return run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from signery.digests import hash_file
    from signery.keys import FileSigner, generate_private_key, verify_signature
    from signery.pkcs11 import PKCS11Signer, generate_key

    uri = f"pkcs11:token=bench;object={{}}?module-path={MODULE}&pin-value={PIN}"
    msg = b"x" * 200  # a DSSE envelope's PAE is this small
    print(f"SoftHSM2 per-signature cost (median of {args.repeat} rounds)")
    print(f"{'key':10} {'FileSigner':>12} {'PKCS11Signer':>13} {'raw C_Sign':>11} {'ratio':>7}  target <= 1.5x")
    results: dict[str, float] = {}
    for alg, n in (("ed25519", args.ed25519), ("rsa-3072", args.rsa)):
        generate_key(uri.format(alg), alg)
        token_signer = PKCS11Signer(uri.format(alg))
        file_signer = FileSigner(generate_private_key(alg))
        verify_signature(token_signer.public_key(), token_signer.sign(msg), msg)
        t_file = per_call(lambda s=file_signer: s.sign(msg), n, args.repeat)
        t_token = per_call(lambda s=token_signer: s.sign(msg), n, args.repeat)
        key = token_signer._open()  # the python-pkcs11 key object itself: SoftHSM2 without signery
        from pkcs11 import MGF, Mechanism

        if alg == "ed25519":
            t_raw = per_call(lambda k=key: k.sign(msg, mechanism=Mechanism.EDDSA), n, args.repeat)  # type: ignore[attr-defined]
        else:
            digest = hashlib.sha256(msg).digest()
            param = (Mechanism.SHA256, MGF.SHA256, 32)
            t_raw = per_call(
                lambda k=key, d=digest, p=param: k.sign(d, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=p),  # type: ignore[attr-defined,misc]
                n,
                args.repeat,
            )
        ratio = t_token / t_file
        results[alg] = ratio
        print(f"{alg:10} {t_file * 1e6:10.1f}us {t_token * 1e6:11.1f}us {t_raw * 1e6:9.1f}us {ratio:6.2f}x")
        if alg == "rsa-3072":
            big_signer = token_signer
            assert isinstance(token_signer.public_key(), rsa.RSAPublicKey)
        else:
            token_signer.close()

    # -- a 1 GiB file: hashed here once, the digest signed in the token ------------------------------------------
    data = root / "big.bin"
    chunk = os.urandom(1 << 20)
    with data.open("wb") as fh:
        for _ in range(args.size_mib):
            fh.write(chunk)
    openssl = shutil.which("openssl") or "openssl"

    def ours() -> float:
        t0 = time.perf_counter()
        digest = hash_file(data, ("sha256",))["sha256"]
        big_signer.sign_digest(digest, hash_name="sha256")
        return time.perf_counter() - t0

    def theirs() -> float:
        t0 = time.perf_counter()
        subprocess.run([openssl, "dgst", "-sha256", str(data)], check=True, capture_output=True)
        return time.perf_counter() - t0

    ours()
    theirs()  # warm-up: the file is in the page cache for both
    mine, peer = [], []
    for _ in range(args.repeat):
        mine.append(ours())
        peer.append(theirs())
    t_mine, t_peer = statistics.median(mine), statistics.median(peer)
    print(f"\n{args.size_mib} MiB file, sha256 (median of {args.repeat}, alternating, warm page cache)")
    print(f"  hash_file + PKCS11Signer.sign_digest (RSA-3072 PSS): {t_mine:.3f} s")
    print(f"  openssl dgst -sha256:                                {t_peer:.3f} s")
    print(f"  ratio: {t_mine / t_peer:.3f}x  target <= 1.10x")
    big_signer.close()
    ok = all(r <= 1.5 for r in results.values()) and t_mine / t_peer <= 1.10
    print("\nall targets met" if ok else "\nsome targets missed (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
