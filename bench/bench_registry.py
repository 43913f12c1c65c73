"""Registry benchmark: GET of a 1 MiB package with 32 concurrent clients, and the server's peak RSS while a
100 MiB package is published. The peer, measured in the same run on the same file, is Python's plain static-file
server (``python -m http.server``); figures are printed beside the targets and as a ratio to the peer.

Run: .venv/bin/python bench/bench_registry.py [--duration 10]
Uses wrk when installed (it is in CI), else an httpx load loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 32
TARGET_RPS, TARGET_P99_MS, TARGET_RSS_MB = 400, 100, 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def wrk(url: str, duration: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{duration}s", "--latency", url], capture_output=True, text=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, p99


def httpx_load(url: str, duration: int) -> tuple[float, float]:
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient, stop: float) -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            r = await client.get(url)
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)

    async def main() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            start = time.monotonic()
            await asyncio.gather(*(worker(client, start + duration) for _ in range(CONCURRENCY)))
            return time.monotonic() - start

    elapsed = asyncio.run(main())
    return len(latencies) / elapsed, statistics.quantiles(latencies, n=100)[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    load = wrk if shutil.which("wrk") else httpx_load
    sys.path.insert(0, str(ROOT / "src"))
    from signery.registry.client import publish_package
    from signery.registry.settings import RegistrySettings
    from signery.registry.store import RegistryStore

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data = tmp / "data"
        store = RegistryStore(RegistrySettings(data_dir=data))
        token = store.create_token("bench")[1]
        store.close()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "signery", "registry", "serve", "--data", str(data), "--port", str(port)],
            stderr=subprocess.DEVNULL,
        )
        peer = None
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(f"{url}/healthz")
            big = tmp / "pkg-100mib.bin"
            with big.open("wb") as fh:
                for _ in range(100):
                    fh.write(os.urandom(1 << 20))
            before = rss_kib(server.pid, "VmRSS")
            peak = [rss_kib(server.pid, "VmHWM")]
            done = threading.Event()

            def sample() -> None:  # VmHWM is the kernel's own peak; sampling VmRSS too guards against resets
                while not done.is_set():
                    peak.append(rss_kib(server.pid, "VmRSS"))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            t = time.perf_counter()
            publish_package(url, big, token=token, name="big", version="1.0.0")
            elapsed = time.perf_counter() - t
            done.set()
            sampler.join()
            peak_kib = max(*peak, rss_kib(server.pid, "VmHWM"))
            print(
                f"publish 100 MiB     server peak RSS {peak_kib / 1024:6.1f} MB "
                f"(fresh server, idle before: {before / 1024:.1f} MB, "
                f"growth {(peak_kib - before) / 1024:.1f} MB) in {elapsed:.2f}s; target <= {TARGET_RSS_MB} MB: "
                f"{'met' if peak_kib / 1024 <= TARGET_RSS_MB else 'NOT met'}"
            )
            small = tmp / "pkg-1mib.bin"
            small.write_bytes(os.urandom(1 << 20))
            index, _ = publish_package(url, small, token=token, name="bench", version="1.0.0")
            download = f"{url}{index.download_path}"
            assert httpx.get(download).content == small.read_bytes()

            peer_dir = tmp / "static"
            peer_dir.mkdir()
            shutil.copy(small, peer_dir / small.name)
            peer_port = free_port()
            peer = subprocess.Popen(
                [sys.executable, "-m", "http.server", str(peer_port), "--bind", "127.0.0.1", "-d", str(peer_dir)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peer_url = f"http://127.0.0.1:{peer_port}/{small.name}"
            wait_up(peer_url)

            rps, p99 = load(download, args.duration)
            peer_rps, peer_p99 = load(peer_url, args.duration)
            print(f"load generator: {load.__name__}, {CONCURRENCY} concurrent clients, {args.duration}s each")
            print(f"GET 1 MiB package   signery registry: {rps:8.0f} downloads/s  p99 {p99:7.1f} ms")
            print(f"                    peer http.server: {peer_rps:8.0f} downloads/s  p99 {peer_p99:7.1f} ms")
            print(
                f"                    target >= {TARGET_RPS}/s, p99 <= {TARGET_P99_MS} ms: "
                f"{'met' if rps >= TARGET_RPS and p99 <= TARGET_P99_MS else 'NOT met'}; "
                f"ratio to peer {rps / peer_rps:.2f}x throughput, {p99 / peer_p99:.2f}x p99"
            )

        finally:
            for proc in (server, peer):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)


if __name__ == "__main__":
    main()
