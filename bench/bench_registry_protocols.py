"""Host-protocol benchmark: 1 MiB downloads on /elastic, /mattermost and /dify next to nginx serving the same
files, wrk at 32 connections, ratios in the same run; then /elastic/search over 10,000 packages.

Three measurements per protocol download:
- ``route``: ``signery registry serve --workers N`` answering the download itself (uvicorn; the download fast path
  and ``os.sendfile``, see ``src/signery/registry/fastpath.py``);
- ``nginx``: nginx serving the same bytes from a plain directory (the peer);
- ``deploy``: the documented deployment, nginx serving the registry's ``--static-dir`` tree and proxying the rest
  to the registry (docs/registry.md).

nginx runs as many worker processes as the registry does (``--workers``, default: one per core), so the ratio
compares like with like. Targets: downloads ≥ 0.9x nginx with p99 ≤ 50 ms; /search p99 ≤ 20 ms. Needs wrk and
nginx (``apt-get install -y wrk nginx-light``); without nginx only the route is measured.

Run: .venv/bin/python bench/bench_registry_protocols.py [--duration 5] [--rounds 3] [--packages 10000] [--workers N]
     [--data DIR: keep the seeded registry there and reuse it] [--src DIR: serve another source tree, e.g. a
     checkout of the previous version, for a before/after in one session]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
CONCURRENCY = 32
TARGET_RATIO, TARGET_P99_MS, TARGET_SEARCH_P99_MS = 0.9, 50.0, 20.0
SIZE = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def wrk(url: str, duration: int, connections: int = CONCURRENCY) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url], capture_output=True, text=True
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if m is None or p is None:
        raise SystemExit(f"wrk output not understood:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p.group(2)]
    return float(m.group(1)), float(p.group(1)) * scale


def elastic_zip(name: str, version: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    root = f"{name}-{version}"
    manifest = (
        f"format_version: 2.7.0\nname: {name}\ntitle: {name}\nversion: {version}\ndescription: d\ntype: integration\n"
        f"categories: [security]\nconditions:\n  kibana:\n    version: ^8.0.0\nowner:\n  github: acme\n"
    )
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{root}/manifest.yml", manifest)
        if payload:
            z.writestr(f"{root}/data.bin", payload, compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def seed(data: Path, packages: int) -> dict[str, str]:
    """Publish the 1 MiB packages through the store, and ``packages`` small Elastic ones for /search."""
    import tarfile

    from signery.registry.settings import RegistrySettings
    from signery.registry.store import RegistryStore

    store = RegistryStore(RegistrySettings(data_dir=data))
    publisher = store.authenticate(store.create_token("bench")[1])

    def put(filename: str, body: bytes) -> None:
        staged = store.blobs.stage(max_size=1 << 30)
        staged.write(body)
        sha, _ = staged.commit()
        store.publish(publisher, package_sha256=sha, filename=filename)

    payload = os.urandom(SIZE)
    put("big_pkg-1.0.0.zip", elastic_zip("big_pkg", "1.0.0", payload))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz", compresslevel=1) as t:
        for name, body in (
            ("com.acme.big/plugin.json", b'{"id":"com.acme.big","version":"1.0.0"}'),
            ("com.acme.big/server/bin", payload),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    put("com.acme.big-1.0.0.tar.gz", tar.getvalue())
    dz = io.BytesIO()
    with zipfile.ZipFile(dz, "w") as z:
        z.writestr("manifest.yaml", "name: big\nversion: 1.0.0\nauthor: acme\ntype: plugin\n")
        z.writestr("data.bin", payload, compress_type=zipfile.ZIP_STORED)
    put("acme-big_1.0.0.difypkg", dz.getvalue())
    t0 = time.monotonic()
    for i in range(packages):
        put(f"pkg_{i:05d}-1.0.{i % 7}.zip", elastic_zip(f"pkg_{i:05d}", f"1.0.{i % 7}", b""))
    print(f"seeded {packages} packages in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    store.close()
    return {
        "elastic": "/elastic/epr/big_pkg/big_pkg-1.0.0.zip",
        "mattermost": "/mattermost/plugins/com.acme.big/1.0.0/com.acme.big-1.0.0.tar.gz",
        "dify": "/dify/api/v1/plugins/acme/big/1.0.0/download",
    }


NGINX_PLAIN = """
worker_processes {workers};
daemon off;
pid {work}/nginx-plain.pid;
error_log {work}/nginx-plain.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""

# The documented deployment (docs/registry.md): nginx serves the registry's --static-dir tree, the rest goes to
# the registry.
NGINX_DEPLOY = """
worker_processes {workers};
daemon off;
pid {work}/nginx-deploy.pid;
error_log {work}/nginx-deploy.err warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  upstream signery_registry {{ server 127.0.0.1:{app_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/(elastic/epr|mattermost/plugins|dify/api/v1/plugins/[^/]+/[^/]+/[^/]+/download$) {{
      root {static};
      add_header Cache-Control "public, max-age=31536000, immutable";
      try_files $uri @registry;
    }}
    location / {{
      proxy_pass http://signery_registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }}
    location @registry {{
      proxy_pass http://signery_registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }}
  }}
}}
"""


def start_nginx(conf: str, work: Path, name: str) -> subprocess.Popen[bytes]:
    path = work / f"{name}.conf"
    if os.geteuid() == 0:  # workers would run as nobody, who cannot read the private temporary directory
        conf = "user root;\n" + conf
    path.write_text(conf)
    return subprocess.Popen(["nginx", "-c", str(path), "-p", str(work)], stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--packages", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="alternated wrk runs per target; medians are reported")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="registry and nginx worker processes")
    ap.add_argument("--data", type=Path, default=None, help="seeded registry to reuse (seeded there when absent)")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree the registry is served from")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install -y wrk)")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="signery-bench-") as tmp:
        work = Path(tmp)
        data, static = (args.data or work / "data"), work / "static"
        if args.data is not None and (data / "seeded.json").is_file():
            paths = json.loads((data / "seeded.json").read_text())
        else:
            paths = seed(data, args.packages)
            (data / "seeded.json").write_text(json.dumps(paths))
        app_port = free_port()
        env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
        workers = ["--workers", str(args.workers)] if args.workers > 1 else []
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "signery",
                "registry",
                "serve",
                "--data",
                str(data),
                "--port",
                str(app_port),
                "--static-dir",
                str(static),
                *workers,
            ],
            env=env,
            stderr=(work / "registry.err").open("wb"),
        )
        procs: list[subprocess.Popen[bytes]] = [server]
        try:
            app = f"http://127.0.0.1:{app_port}"
            t0 = time.monotonic()
            wait_up(f"{app}/healthz", timeout=600)  # the catalogue and the static tree are built before serving
            print(f"registry up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            plain_root = work / "plain"
            for rel in paths.values():
                body = httpx.get(f"{app}{rel}").content
                target = plain_root / rel.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
            ports: dict[str, int] = {}
            if nginx:
                os.environ["PATH"] = f"{Path(nginx).parent}:{os.environ['PATH']}"
                ports["nginx"], ports["deploy"] = free_port(), free_port()
                procs.append(
                    start_nginx(
                        NGINX_PLAIN.format(work=work, port=ports["nginx"], root=plain_root, workers=args.workers),
                        work,
                        "plain",
                    )
                )
                procs.append(
                    start_nginx(
                        NGINX_DEPLOY.format(
                            work=work, port=ports["deploy"], static=static, app_port=app_port, workers=args.workers
                        ),
                        work,
                        "deploy",
                    )
                )
                wait_up(f"http://127.0.0.1:{ports['nginx']}/")
                wait_up(f"http://127.0.0.1:{ports['deploy']}/healthz")
            for proto, rel in paths.items():
                row: dict[str, object] = {}
                targets = {"route": app, **{k: f"http://127.0.0.1:{p}" for k, p in ports.items()}}
                samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in targets}
                for kind, base in targets.items():
                    got = httpx.get(f"{base}{rel}")
                    assert got.status_code == 200 and len(got.content) > SIZE, (kind, proto, got.status_code)
                for _ in range(args.rounds):  # alternated, so drift in the machine's load hits every target alike
                    for kind, base in targets.items():
                        samples[kind].append(wrk(f"{base}{rel}", args.duration))
                for kind, runs in samples.items():
                    rps = statistics.median(r for r, _ in runs)
                    p99 = statistics.median(p for _, p in runs)
                    row[kind] = {"rps": round(rps, 1), "p99_ms": round(p99, 2)}
                if "nginx" in row:
                    peer = row["nginx"]["rps"]  # type: ignore[index]
                    for kind in ("route", "deploy"):
                        row[f"{kind}_ratio"] = round(row[kind]["rps"] / peer, 3)  # type: ignore[index]
                results[proto] = row
                print(proto, json.dumps(row), file=sys.stderr)
            wanted = f"pkg_{args.packages // 2:05d}"
            search = f"{app}/elastic/search?package={wanted}&prerelease=false&kibana.version=8.15.0"
            assert httpx.get(search).json()[0]["name"] == wanted
            rps, p99 = wrk(search, args.duration)
            results["search_package"] = {"rps": round(rps, 1), "p99_ms": round(p99, 2)}
            full = f"{app}/elastic/search?kibana.version=8.15.0"
            assert len(httpx.get(full).json()) == args.packages + 1
            rps, p99 = wrk(full, args.duration, connections=8)
            results["search_all_10k"] = {"rps": round(rps, 1), "p99_ms": round(p99, 2), "connections": 8}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    results["workers"] = args.workers
    results["src"] = str(args.src)
    print(json.dumps(results, indent=1))
    print(
        f"targets: downloads >= {TARGET_RATIO}x nginx and p99 <= {TARGET_P99_MS} ms; "
        f"/search p99 <= {TARGET_SEARCH_P99_MS} ms",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
