"""Signing service throughput: Ed25519 signatures over HTTP keep-alive vs a process per signature.

Starts ``signery server --workers 2`` on a fresh database, drives ``POST /v1/keys/NAME/sign`` (a 32-byte digest
signed as an Ed25519 message) with ``wrk`` over keep-alive connections, then checks that every successful request
left exactly one audit row and that the chain verifies. In the same run it measures the balenaSign model, one
``openssl pkeyutl -sign`` process per signature with 2 concurrent workers, and prints the ratio.

    .venv/bin/python bench/bench_service.py --seconds 30
    .venv/bin/python bench/bench_service.py --seconds 10 --database-url postgresql://postgres@127.0.0.1/bench
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


def run_wrk(url: str, token: str, *, seconds: int, connections: int) -> dict[str, float]:
    digest = base64.b64encode(hashlib.sha256(b"artifact").digest()).decode()
    body = json.dumps({"message": digest})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT.format(body=body, token=token))
        script = fh.name
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, f"{url}/v1/keys/bench/sign"],
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
    args = ap.parse_args()
    for tool in ("wrk", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required")
    home = Path(tempfile.mkdtemp(prefix="signery-bench-"))
    url = args.database_url or f"sqlite:///{home / 'service.db'}"
    admin = init_service(home, url)
    server = start_server(home, url, workers=args.workers)
    try:
        h = {"X-API-Key": admin}
        r = httpx.post(f"{server.url}/v1/keys", json={"name": "bench", "type": "ed25519"}, headers=h, timeout=30)
        r.raise_for_status()
        db = Database(url)
        with db.session() as s:
            rows_before = s.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.action == "sign")) or 0
        service = run_wrk(server.url, admin, seconds=args.seconds, connections=args.connections)
    finally:
        server.stop()
    with db.session() as s:
        signed = s.scalar(
            select(func.count()).select_from(AuditRow).where(AuditRow.action == "sign", AuditRow.result == "ok")
        )
    audited = (signed or 0) - rows_before
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
    print(
        f"openssl pkeyutl   : {peer['rate']:8.0f} signatures/s  (process per signature, {args.workers} workers, "
        f"{peer['signatures']} signatures)"
    )
    print(f"ratio             : {service['rate'] / peer['rate']:.1f}x")
    shutil.rmtree(home, ignore_errors=True)
    # wrk stops counting at the deadline; requests still in flight then are served (and audited) but not counted.
    if not ok <= audited <= ok + args.connections:
        sys.exit("audit rows and successful signatures differ")


if __name__ == "__main__":
    main()
