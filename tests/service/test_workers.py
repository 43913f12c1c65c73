"""``signery server --workers N``: each worker has its own SO_REUSEPORT socket, so keep-alive connections spread over
the workers; a worker that dies is replaced; a port in use is refused."""

from __future__ import annotations

import base64
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
from servers import init_service, run_cli, running


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == supervisor and b"spawn_main" in cmdline:
            found.append(int(entry))
    return sorted(found)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_keep_alive_connections_spread_over_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    admin = init_service(tmp_path, url)
    h = {"X-API-Key": admin}
    with running(tmp_path, url, workers=2) as server:
        # Connect at once, as wrk or a load balancer does, as soon as the server first answers: the second worker
        # may still be starting; connections the kernel gave its socket wait for it.
        clients = [httpx.Client(base_url=server.url, headers=h, timeout=30) for _ in range(16)]
        for c in clients:
            c.get("/healthz")
        workers = _workers(server.proc.pid)
        assert len(workers) == 2
        assert httpx.post(f"{server.url}/v1/keys", json={"name": "k", "type": "ed25519"}, headers=h).status_code == 201
        before = {pid: _cpu_seconds(pid) for pid in workers}
        body = {"message": base64.b64encode(b"artifact").decode()}

        def load(c: httpx.Client) -> None:
            for _ in range(60):
                assert c.post("/v1/keys/k/sign", json=body).status_code == 200

        threads = [threading.Thread(target=load, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
        used = sorted(_cpu_seconds(pid) - before[pid] for pid in workers)
    assert used[0] > 0.2 * used[1], f"one worker served (almost) everything: {used}"


def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    init_service(tmp_path, url)
    with running(tmp_path, url, workers=2) as server:
        first = _workers(server.proc.pid)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = _workers(server.proc.pid)
            if len(now) == 2 and first[0] not in now:
                break
            time.sleep(0.2)
        assert len(now) == 2 and first[0] not in now and first[1] in now
        for _ in range(10):  # whichever worker the kernel picks answers
            with httpx.Client(base_url=server.url) as c:
                assert c.get("/healthz").status_code == 200


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    init_service(tmp_path, url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli("server", "--database-url", url, "--port", str(port), "--workers", "2", home=tmp_path)
    assert out.returncode == 3 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
