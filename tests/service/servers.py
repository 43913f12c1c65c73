"""Real ``signery server`` processes on 127.0.0.1 ports, for the process, fault and client tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SIGNERY_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "signery", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def init_service(home: Path, url: str) -> str:
    """``signery server init``; returns the admin token (its last line)."""
    out = run_cli("server", "init", "--database-url", url, home=home)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def start_server(
    home: Path,
    db_url: str,
    *,
    workers: int = 1,
    extra: tuple[str, ...] = (),
    tls: tuple[Path, Path, Path] | None = None,
) -> ServerProcess:
    """``signery server`` on a free port; ``tls`` = (certificate, key, CA that issued it) serves HTTPS."""
    port = free_port()
    env = {**os.environ, "SIGNERY_HOME": str(home)}
    args = [sys.executable, "-m", "signery", "server", "--database-url", db_url, "--port", str(port)]
    args += ["--workers", str(workers), "--rate-limit", "100000", "--burst", "100000", *extra]
    if tls is not None:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(tls[2])) if tls is not None else True
    # Its own process group, so a kill reaches uvicorn's worker processes too.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200:
                return ServerProcess(proc, url)
        time.sleep(0.1)
    ServerProcess(proc, url).kill()
    raise RuntimeError("server did not start")


@contextlib.contextmanager
def running(home: Path, db_url: str, **kw: object) -> Iterator[ServerProcess]:
    server = start_server(home, db_url, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
