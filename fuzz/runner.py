"""The implementation of ``fuzz/run``: build the accelerator variants, run the atheris targets, report.

    fuzz/run [--seconds N] [--jobs J] [--no-sanitize] [--keep DIR] [TARGET ...] [-- LIBFUZZER_FLAG ...]
    fuzz/run --reproduce FILE [FILE ...] [--target TARGET]

TARGET is ``zip``, ``tar``, ``openpgp``, ``native_document`` or ``ocm_descriptor`` (default: all). The zip target runs
once per accelerator build, ``zip:libdeflate`` and ``zip:zlib``; name one of them to run only it. Each run fuzzes
for N seconds (default 45) on a copy of ``fuzz/corpus/<target>/`` (the committed seeds are never written), with
``-timeout=10 -rss_limit_mb=2048``. Inputs that crash, time out or exhaust memory are written to
``fuzz/crashes/<target>/`` and the runner exits 1. ``--keep DIR`` keeps (and next time reuses) the grown corpora
under ``DIR/<run>/`` for longer campaigns.

The accelerator (``src/signery/_fastzip.c``) is compiled with gcc into ``$SIGNERY_FUZZ_CACHE`` (default
``~/.cache/signery-fuzz``) twice, with libdeflate and with zlib, under AddressSanitizer and UBSan (their runtimes
are preloaded for those runs), and loaded in place of the installed module through ``$SIGNERY_FUZZ_FASTZIP``.
native_document loads the libdeflate build without sanitizers (see TARGETS).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SOURCE = ROOT / "src" / "signery" / "_fastzip.c"
CRASHES = FUZZ / "crashes"
VARIANTS = ("libdeflate", "zlib")
FLAGS = ["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]
# verify_asan_link_order=0: the coverage shim below is preloaded ahead of libasan (it intercepts nothing ASan does).
ASAN_OPTIONS = "detect_leaks=0:abort_on_error=1:verify_asan_link_order=0:quarantine_size_mb=64:malloc_context_size=10"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1:abort_on_error=1"


@dataclass(frozen=True)
class Target:
    script: str
    max_len: int
    variants: tuple[str, ...] = ()  # accelerator builds to run against; the first is the default
    sanitize: bool = True  # build them under ASan+UBSan (unless --no-sanitize)


TARGETS = {
    "zip": Target("fuzz_zip.py", 16384, VARIANTS),
    "tar": Target("fuzz_tar.py", 16384),
    "openpgp": Target("fuzz_openpgp.py", 8192),
    # Unsanitized: ASan makes every read of a signature file cost ~50 ms (native reads files with a 256 MiB bound,
    # and ASan poisons the whole buffer); subjects_json, the C this target reaches, runs under ASan in the unit tests.
    "native_document": Target("fuzz_native_document.py", 16384, ("libdeflate",), sanitize=False),
    "ocm_descriptor": Target("fuzz_ocm_descriptor.py", 16384),
}


@dataclass
class Run:
    target: str
    variant: str | None
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    elapsed: float = 0.0
    artifacts: list[Path] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)
    prefix: str = ""  # of its artifacts' names (the zip runs share fuzz/crashes/zip/)

    @property
    def name(self) -> str:
        return (
            f"{self.target}:{self.variant}" if self.variant and len(TARGETS[self.target].variants) > 1 else self.target
        )


def fail(message: str) -> None:
    print(f"fuzz/run: {message}", file=sys.stderr)
    sys.exit(2)


# -- building the accelerator ----------------------------------------------------------------------------------


def _cache() -> Path:
    base = os.environ.get("SIGNERY_FUZZ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "signery-fuzz"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sanitizer_runtimes(cc: str) -> list[str] | None:
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        found = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True)
        path = found.stdout.strip()
        if not os.path.isabs(path):
            return None
        libs.append(path)
    return libs


def build(variant: str, *, sanitize: bool) -> Path:
    cc = shutil.which("gcc")
    if cc is None:
        fail("gcc is needed to build the accelerator variants (apt-get install gcc), or use --installed")
    assert cc is not None
    opt = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    flags = ["-shared", "-fPIC", *(opt if sanitize else ["-O2"]), "-std=c11", f"-I{sysconfig.get_paths()['include']}"]
    flags += ["-DHAVE_LIBDEFLATE"] if variant == "libdeflate" else []
    libs = ["-ldeflate", "-lz", "-lcrypto"] if variant == "libdeflate" else ["-lz", "-lcrypto"]  # as setup.py links
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(SOURCE.read_bytes() + json.dumps([flags, libs, version, sys.version]).encode()).hexdigest()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    out = _cache() / f"_fastzip-{variant}-{'asan' if sanitize else 'plain'}-{key[:16]}{suffix}"
    if not out.exists():
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        print(f"building the accelerator with {variant}{' under ASan+UBSan' if sanitize else ''}: {out}")
        r = subprocess.run([cc, *flags, str(SOURCE), *libs, "-o", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"building {out.name} failed:\n{r.stderr}")
        os.replace(tmp, out)
    return out


# gcc's libasan and libubsan define weak __sanitizer_cov_* stubs. Preloaded, they would take the calls by which atheris
# hands Python coverage to its libFuzzer (the fuzzer would run blind). This shim, preloaded before them, forwards those
# calls to atheris's own definitions, found through $SIGNERY_FUZZ_ATHERIS_CORE once atheris has loaded it. (atheris
# then warns in the log that "coverage symbols are being provided by a library other than libFuzzer": expected.)
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
static void *sym(const char *name) {
    static void *core;
    if (!core) {
        const char *path = getenv("SIGNERY_FUZZ_ATHERIS_CORE");
        if (path) core = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (!core) return NULL;
    }
    return dlsym(core, name);
}
#define FORWARD(name, params, args)                                  \
    void name params {                                               \
        static void (*f) params;                                     \
        if (!f) f = (void (*) params)sym(#name);                     \
        if (f) f args;                                               \
    }
FORWARD(__sanitizer_cov_8bit_counters_init, (uint8_t *a, uint8_t *b), (a, b))
FORWARD(__sanitizer_cov_pcs_init, (const uintptr_t *a, const uintptr_t *b), (a, b))
FORWARD(__sanitizer_cov_trace_pc_guard_init, (uint32_t *a, uint32_t *b), (a, b))
FORWARD(__sanitizer_cov_trace_pc_guard, (uint32_t *a), (a))
FORWARD(__sanitizer_cov_trace_pc, (void), ())
FORWARD(__sanitizer_cov_trace_pc_indir, (uintptr_t a), (a))
FORWARD(__sanitizer_cov_trace_cmp1, (uint8_t a, uint8_t b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp2, (uint16_t a, uint16_t b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp4, (uint32_t a, uint32_t b), (a, b))
FORWARD(__sanitizer_cov_trace_cmp8, (uint64_t a, uint64_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp1, (uint8_t a, uint8_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp2, (uint16_t a, uint16_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp4, (uint32_t a, uint32_t b), (a, b))
FORWARD(__sanitizer_cov_trace_const_cmp8, (uint64_t a, uint64_t b), (a, b))
FORWARD(__sanitizer_cov_trace_div4, (uint32_t a), (a))
FORWARD(__sanitizer_cov_trace_div8, (uint64_t a), (a))
FORWARD(__sanitizer_cov_trace_gep, (uintptr_t a), (a))
FORWARD(__sanitizer_cov_trace_switch, (uint64_t a, uint64_t *b), (a, b))
"""


def coverage_shim(cc: str) -> Path:
    key = hashlib.sha256(SHIM.encode()).hexdigest()[:16]
    out = _cache() / f"cov-shim-{key}.so"
    if not out.exists():
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        r = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-x", "c", "-", "-ldl", "-o", str(tmp)], input=SHIM, capture_output=True,
            text=True,
        )  # fmt: skip
        if r.returncode != 0:
            fail(f"building the coverage shim failed:\n{r.stderr}")
        os.replace(tmp, out)
    return out


def atheris_core() -> str:
    import atheris

    found = sorted(Path(atheris.__file__).parent.glob("core_with_libfuzzer*.so"))
    if not found:
        fail(f"atheris at {atheris.__file__} has no core_with_libfuzzer module")
    return str(found[0])


def environment(target: Target, variant: str | None, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SIGNERY_FUZZ_FASTZIP", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if variant is None or args.installed:
        return env
    sanitize = target.sanitize and not args.no_sanitize
    runtimes = sanitizer_runtimes(shutil.which("gcc") or "gcc") if sanitize else None
    if sanitize and runtimes is None:
        if os.environ.get("CI"):
            fail("gcc's libasan/libubsan are missing (apt-get install gcc): the accelerator must run sanitized in CI")
        print("fuzz/run: no libasan/libubsan for gcc here; running the accelerator unsanitized", file=sys.stderr)
        sanitize = False
    env["SIGNERY_FUZZ_FASTZIP"] = str(build(variant, sanitize=sanitize))
    if sanitize and runtimes:
        shim = str(coverage_shim(shutil.which("gcc") or "gcc"))
        env["LD_PRELOAD"] = ":".join([shim, *runtimes, *filter(None, [env.get("LD_PRELOAD")])])
        env["SIGNERY_FUZZ_ATHERIS_CORE"] = atheris_core()
        env["ASAN_OPTIONS"] = ASAN_OPTIONS
        env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
    return env


# -- running ---------------------------------------------------------------------------------------------------


def tidy() -> None:
    """Remove the crash directories no run wrote into (they were made for libFuzzer's -artifact_prefix)."""
    for d in [*CRASHES.glob("*/"), CRASHES]:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def expand(specs: list[str], *, installed: bool = False) -> list[Run]:
    runs: list[Run] = []
    for spec in specs or list(TARGETS):
        name, _, variant = spec.partition(":")
        target = TARGETS.get(name)
        if target is None:
            fail(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
        assert target is not None
        if variant and variant not in target.variants:
            fail(f"target {name} has no variant {variant!r} (it has: {', '.join(target.variants) or 'none'})")
        chosen = [None] if installed and target.variants else [variant] if variant else list(target.variants) or [None]
        runs += [Run(name, v) for v in chosen if Run(name, v) not in runs]
    return runs


def start(run: Run, args: argparse.Namespace, extra: list[str], work: Path) -> None:
    target = TARGETS[run.target]
    corpus = (Path(args.keep) / run.name.replace(":", "-")) if args.keep else work / run.name.replace(":", "-")
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in (FUZZ / "corpus" / run.target).iterdir():
        if not (corpus / seed.name).exists():
            shutil.copyfile(seed, corpus / seed.name)
    crashes = CRASHES / run.target
    crashes.mkdir(parents=True, exist_ok=True)
    run.seen = set(crashes.iterdir())
    run.prefix = prefix = f"{run.variant}-" if run.variant and len(target.variants) > 1 else ""
    cmd = [
        sys.executable,
        str(FUZZ / target.script),
        f"-max_total_time={args.seconds}",
        f"-max_len={target.max_len}",
        f"-artifact_prefix={crashes}/{prefix}",
        *FLAGS,
        *extra,
        str(corpus),
    ]
    run.log = work / f"{run.name.replace(':', '-')}.log"
    with run.log.open("wb") as log:
        run.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=environment(target, run.variant, args), stdout=log, stderr=subprocess.STDOUT
        )
    run.started = time.monotonic()
    print(f"started {run.name} ({args.seconds} s)", flush=True)


def stats(log: str) -> tuple[int | None, int | None]:
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(r"Done (\d+) runs", log)
    rate = re.findall(r"stat::average_exec_per_sec:\s*(\d+)", log)
    if not execs:
        execs = re.findall(r"^#(\d+)\s", log, re.MULTILINE)
    return (int(execs[-1]) if execs else None), (int(rate[-1]) if rate else None)


def finish(run: Run) -> bool:
    assert run.proc is not None and run.log is not None
    run.elapsed = time.monotonic() - run.started
    crashes = CRASHES / run.target
    run.artifacts = sorted(a for a in set(crashes.iterdir()) - run.seen if a.name.startswith(run.prefix))
    log = run.log.read_text(errors="replace")
    execs, rate = stats(log)
    ok = run.proc.returncode == 0 and not run.artifacts
    verdict = "ok" if ok else "FOUND A BUG"
    print(
        f"{verdict:>11}  {run.name:<18} {run.elapsed:5.0f} s  {execs if execs is not None else '?':>9} execs"
        f"  {rate if rate is not None else '?':>6}/s",
        flush=True,
    )
    if not ok:
        lines = [ln for ln in log.splitlines() if not ln.startswith("INFO: Instrumenting")]
        markers = ("=== Uncaught Python exception", "ERROR: AddressSanitizer", "runtime error:", "ERROR: libFuzzer")
        first = next((i for i, ln in enumerate(lines) if any(m in ln for m in markers)), max(0, len(lines) - 60))
        print("\n".join("      | " + ln for ln in lines[first : first + 150]))
        for a in run.artifacts:
            print(f"      reproduce: fuzz/run --reproduce {a.relative_to(ROOT)}")
    return ok


def fuzz(args: argparse.Namespace, extra: list[str]) -> int:
    runs = expand(args.targets, installed=args.installed)
    for run in runs:  # build (or find cached) before the clock starts
        environment(TARGETS[run.target], run.variant, args)
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(runs)))
    began = time.monotonic()
    pending, active, results = list(runs), [], []
    with tempfile.TemporaryDirectory(prefix="signery-fuzz-run-") as d:
        work = Path(d)
        try:
            while pending or active:
                while pending and len(active) < jobs:
                    run = pending.pop(0)
                    start(run, args, extra, work)
                    active.append(run)
                time.sleep(0.2)
                for run in [r for r in active if r.proc is not None and r.proc.poll() is not None]:
                    active.remove(run)
                    results.append(finish(run))
        finally:
            for run in active:  # interrupted: stop the fuzzers this runner started
                if run.proc is not None and run.proc.poll() is None:
                    run.proc.terminate()
                    run.proc.wait()
            tidy()
    wall = time.monotonic() - began
    bad = results.count(False)
    print(f"fuzz/run: {len(runs)} runs, {bad} with findings, {wall:.0f} s wall time ({jobs} at a time)")
    return 1 if bad else 0


def reproduce(args: argparse.Namespace, extra: list[str]) -> int:
    files = [Path(f).resolve() for f in args.reproduce]
    target = args.target
    if target is None:
        parents = {f.parent.name for f in files}
        if len(parents) != 1 or next(iter(parents)) not in TARGETS:
            fail("name the target with --target (the files are not all under fuzz/crashes/<target>/)")
        target = next(iter(parents))
    name, _, variant = target.partition(":")
    if name not in TARGETS:
        fail(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    variants = TARGETS[name].variants
    if not variant and variants:
        prefixes = {f.name.split("-", 1)[0] for f in files}
        variant = next(iter(prefixes)) if len(prefixes) == 1 and next(iter(prefixes)) in variants else variants[0]
    cmd = [sys.executable, str(FUZZ / TARGETS[name].script), *FLAGS, *extra, *map(str, files)]
    print(f"reproducing with {name}{f' ({variant})' if variant else ''}: {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=environment(TARGETS[name], variant or None, args)).returncode


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(
        prog="fuzz/run",
        description="Fuzz signery's parsers of hostile input with atheris.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"{', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=45, help="fuzzing time per run (default 45)")
    parser.add_argument("--jobs", type=int, default=0, help="runs at a time (default: one per CPU)")
    parser.add_argument("--keep", metavar="DIR", help="keep and reuse the grown corpora under DIR/<run>/")
    parser.add_argument("--no-sanitize", action="store_true", help="build the accelerator without ASan/UBSan")
    parser.add_argument("--installed", action="store_true", help="use the installed signery._fastzip as it is")
    parser.add_argument("--reproduce", nargs="+", metavar="FILE", help="run these inputs once and show the failure")
    parser.add_argument("--target", help="the target of --reproduce (default: from the path fuzz/crashes/<target>/)")
    args = parser.parse_args(argv)
    if args.seconds < 1:
        fail("--seconds must be at least 1")
    return reproduce(args, extra) if args.reproduce else fuzz(args, extra)


if __name__ == "__main__":
    sys.exit(main())
