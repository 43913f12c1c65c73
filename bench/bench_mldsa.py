"""ML-DSA-65 beside Ed25519: verifying a small native package, measured in the same run, printed as ratios.

    .venv/bin/python bench/bench_mldsa.py [--files 20] [--repeat 200] [--cli-repeat 10]

Target: verifying a small native package signed with ML-DSA-65 takes <= 2.0x the wall time of verifying the same
package signed with Ed25519, both as a library call (``native.verify``, median of --repeat) and as the real
command line (``signery verify --key``, process start included, median of --cli-repeat). A hybrid envelope (both
signatures, both required) is measured too, for information.

The three signed copies are verified alternately, after one warm-up each, so the noise of a shared machine falls
on all alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET = 2.0


def _package(path: Path, files: int) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.yaml", "name: demo\nversion: 1.0.0\n")
        for i in range(files - 1):
            zf.writestr(f"src/module_{i}.py", f"def f{i}():\n    return {i}\n" * 20, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _median_alternating(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up: imports, page cache
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--cli-repeat", type=int, default=10)
    args = ap.parse_args()

    from signery import hybrid as bundles
    from signery import keys
    from signery.formats import native
    from signery.trust import TrustSet, trusted_key_from_bundle, trusted_key_from_public

    with tempfile.TemporaryDirectory(prefix="bench-mldsa-") as tmp:
        root = Path(tmp)
        signers: dict[str, keys.Signer] = {
            "ed25519": keys.FileSigner(keys.generate_private_key("ed25519")),
            "ml-dsa-65": keys.FileSigner(keys.generate_private_key("ml-dsa-65")),
        }
        ed, ml = bundles.generate_hybrid_keys()
        hybrid = bundles.HybridSigner(keys.FileSigner(ed), keys.FileSigner(ml))
        signed: dict[str, Path] = {}
        trust: dict[str, TrustSet] = {}
        pubs: dict[str, Path] = {}
        for name, signer in signers.items():
            pkg = _package(root / f"{name}.zip", args.files)
            signed[name] = native.sign(pkg, signer, claims={"name": "demo"})
            trust[name] = TrustSet([trusted_key_from_public(signer.public_key(), name=name)])
            pubs[name] = root / f"{name}.public.pem"
            pubs[name].write_bytes(keys.public_key_pem(signer.public_key()))
        pkg = _package(root / "hybrid.zip", args.files)
        signed["hybrid"] = native.sign(pkg, hybrid, claims={"name": "demo"})
        trust["hybrid"] = TrustSet([trusted_key_from_bundle(ed.public_key(), ml.public_key(), name="hybrid")])
        pubs["hybrid"] = root / "hybrid.public.pem"
        pubs["hybrid"].write_bytes(bundles.hybrid_public_pem(ed.public_key(), ml.public_key()))
        for name in signed:
            assert native.verify(signed[name], trust=trust[name]).verified, name

        lib = _median_alternating(
            {n: (lambda n=n: native.verify(signed[n], trust=trust[n])) for n in signed},  # type: ignore[misc]
            args.repeat,
        )
        env = {**os.environ, "SIGNERY_HOME": str(root / "home")}

        def cli(n: str) -> None:
            cmd = [str(BIN / "signery"), "verify", str(signed[n]), "--key", str(pubs[n])]
            subprocess.run(cmd, env=env, check=True, capture_output=True)

        cmd_times = _median_alternating({n: (lambda n=n: cli(n)) for n in signed}, args.cli_repeat)  # type: ignore[misc]

    print(f"native package of {args.files} files; library median of {args.repeat}, CLI median of {args.cli_repeat}")
    ok = True
    for label, figures in (("native.verify", lib), ("signery verify", cmd_times)):
        base = figures["ed25519"]
        for name in ("ed25519", "ml-dsa-65", "hybrid"):
            ratio = figures[name] / base
            note = ""
            if name == "ml-dsa-65":
                passed = ratio <= TARGET
                ok &= passed
                note = f"  (target <= {TARGET:.1f}x: {'ok' if passed else 'MISSED'})"
            print(f"  {label:15s} {name:10s} {figures[name] * 1000:9.3f} ms  {ratio:5.2f}x ed25519{note}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
