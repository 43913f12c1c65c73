"""Signing service throughput: Ed25519 signatures over HTTP keep-alive vs a process per signature.

Starts ``signery server --workers 2`` on a fresh database, drives ``POST /v1/keys/NAME/sign`` (a 32-byte digest
signed as an Ed25519 message) with ``wrk`` over keep-alive connections, then checks that every successful request
left exactly one audit row and that the chain verifies. In the same run it measures the balenaSign model, one
``openssl pkeyutl -sign`` process per signature with 2 concurrent workers, and prints the ratio.

With ``--pkcs11`` the same server also holds an Ed25519 key generated in a throwaway SoftHSM2 token
(``"storage": "pkcs11"``, ``--pkcs11-token``), and the same load runs against it after the sealed key: both
figures come from the same run, each with its audit rows counted.

    .venv/bin/python bench/bench_service.py --seconds 30
    .venv/bin/python bench/bench_service.py --seconds 10 --database-url postgresql://postgres@127.0.0.1/bench
    .venv/bin/python bench/bench_service.py --seconds 20 --pkcs11
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "service"))

from servers import init_service, start_server  # noqa: E402

from signery.service.audit import verify_chain  # noqa: E402
from signery.service.storage import AuditRow, Database  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "{token}"
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_PIN = "bench-pin-1234"  # noqa: S105 - a throwaway SoftHSM2 token's PIN


def softhsm_token(home: Path) -> Path:
    """A throwaway SoftHSM2 configuration with one token, ``bench``; returns its configuration file."""
    tokens = home / "softhsm-tokens"
    tokens.mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", TOKEN_PIN, "--so-pin", "87654321"],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )
    return conf


def audited_signatures(db: Database, key: str) -> int:
    with db.session() as s:
        stmt = select(func.count()).select_from(AuditRow)
        stmt = stmt.where(AuditRow.action == "sign", AuditRow.result == "ok", AuditRow.key_name == key)
        return s.scalar(stmt) or 0


def run_wrk(url: str, token: str, *, seconds: int, connections: int, key: str = "bench") -> dict[str, float]:
    digest = base64.b64encode(hashlib.sha256(b"artifact").digest()).decode()
    body = json.dumps({"message": digest})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT.format(body=body, token=token))
        script = fh.name
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, f"{url}/v1/keys/{key}/sign"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p50 and p99, out
    return {
        "requests": requests,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(*p50.groups()),
        "p99_ms": _ms(*p99.groups()),
    }


def run_openssl(key: Path, *, seconds: float, workers: int) -> dict[str, float]:
    digest = key.parent / "digest.bin"
    digest.write_bytes(hashlib.sha256(b"artifact").digest())
    counts = [0] * workers
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        sig = key.parent / f"sig{i}.bin"
        while time.monotonic() < stop:
            subprocess.run(
                ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(key), "-in", str(digest), "-out", str(sig)],
                check=True,
                capture_output=True,
            )
            counts[i] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"signatures": sum(counts), "rate": sum(counts) / (time.monotonic() - start)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file (the embedded default)")
    ap.add_argument("--openssl-seconds", type=float, default=None, help="default: a third of --seconds, at least 5")
    ap.add_argument(
        "--pkcs11",
        action="store_true",
        help="also run the load against an Ed25519 key held in a SoftHSM2 token (storage: pkcs11)",
    )
    args = ap.parse_args()
    for tool in ("wrk", "openssl", *(("softhsm2-util",) if args.pkcs11 else ())):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required")
    home = Path(tempfile.mkdtemp(prefix="signery-bench-"))
    url = args.database_url or f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    extra: tuple[str, ...] = ()
    if args.pkcs11:
        if not Path(SOFTHSM_MODULE).exists():
            sys.exit(f"SoftHSM2 is required: {SOFTHSM_MODULE} is absent")
        os.environ["SOFTHSM2_CONF"] = str(softhsm_token(home))
        os.environ["SIGNERY_PKCS11_MODULE"] = SOFTHSM_MODULE
        pin_file = home / "token.pin"
        pin_file.write_text(TOKEN_PIN + "\n")
        pin_file.chmod(0o600)
        extra = ("--pkcs11-token", "pkcs11:token=bench", "--pkcs11-pin-file", str(pin_file))
    server = start_server(home, url, workers=args.workers, extra=extra)
    runs: dict[str, tuple[dict[str, float], int]] = {}
    db = Database(url)
    try:
        h = {"X-API-Key": admin}
        keys = {"bench": {"name": "bench", "type": "ed25519"}}
        if args.pkcs11:
            keys["bench-token"] = {"name": "bench-token", "type": "ed25519", "storage": "pkcs11"}
        for name, spec in keys.items():
            httpx.post(f"{server.url}/v1/keys", json=spec, headers=h, timeout=30).raise_for_status()
            before = audited_signatures(db, name)
            result = run_wrk(server.url, admin, seconds=args.seconds, connections=args.connections, key=name)
            time.sleep(0.5)  # requests in flight at wrk's deadline finish (and are audited)
            runs[name] = (result, audited_signatures(db, name) - before)
    finally:
        server.stop()
    service, audited = runs["bench"]
    chain = verify_chain(db)
    db.dispose()
    key = home / "openssl-ed25519.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True, capture_output=True)
    peer = run_openssl(key, seconds=args.openssl_seconds or max(5.0, args.seconds / 3), workers=args.workers)
    ok = service["requests"] - service["errors"]
    print(
        f"database: {db.display_url.split('://')[0]}, {args.workers} server workers, wrk 1 thread "
        f"{args.connections} keep-alive connections, {args.seconds} s, cpus={os.cpu_count()}"
    )
    print(
        f"signery service   : {service['rate']:8.0f} signatures/s  p50 {service['p50_ms']:.1f} ms  "
        f"p99 {service['p99_ms']:.1f} ms  ({ok} ok, {service['errors']} errors)"
    )
    print(
        f"audit             : {audited} sign rows for {ok} requests wrk counted (+ those in flight at its deadline); "
        f"chain of {chain.rows} rows verifies"
    )
    token_run = runs.get("bench-token")
    if token_run is not None:
        tok, tok_audited = token_run
        tok_ok = tok["requests"] - tok["errors"]
        print(
            f"pkcs11 token key  : {tok['rate']:8.0f} signatures/s  p50 {tok['p50_ms']:.1f} ms  "
            f"p99 {tok['p99_ms']:.1f} ms  ({tok_ok} ok, {tok['errors']} errors; SoftHSM2, Ed25519)"
        )
        print(f"token audit       : {tok_audited} sign rows for {tok_ok} requests wrk counted")
    print(
        f"openssl pkeyutl   : {peer['rate']:8.0f} signatures/s  (process per signature, {args.workers} workers, "
        f"{peer['signatures']} signatures)"
    )
    print(f"ratio             : {service['rate'] / peer['rate']:.1f}x")
    shutil.rmtree(home, ignore_errors=True)
    # wrk stops counting at the deadline; requests still in flight then are served (and audited) but not counted.
    for name, (result, rows) in runs.items():
        good = result["requests"] - result["errors"]
        if not good <= rows <= good + args.connections:
            sys.exit(f"{name}: audit rows and successful signatures differ")


if __name__ == "__main__":
    main()
