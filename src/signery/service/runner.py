"""Serving the signing service: uvicorn in this process, or a supervisor of worker processes.

With several workers, uvicorn's own supervisor hands every worker one shared listening socket: the first worker to
wake (or the only one started yet) accepts a whole burst of connections, and with keep-alive clients (proxies, CI
runners, wrk) one worker can end up serving every connection while the others idle. Here the supervisor opens one
``SO_REUSEPORT`` socket per worker before starting any, so the kernel assigns each new connection to a worker's
socket from the start (a worker still starting finds its connections waiting); Linux lets only the same user join
the group. Where ``SO_REUSEPORT`` does not exist, the workers share one socket. A worker killed by a signal is
replaced on the socket of the one it replaces; one that exits by itself while starting stops the server.

Worker processes are spawned, not forked, and receive their settings as arguments over multiprocessing's pipe:
nothing travels through the environment, and each worker builds its application with :func:`app_for`, the
production ASGI factory.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from ..errors import ConfigError, EnvironmentFailure
from .app import create_app
from .settings import Settings, TlsFiles
from .storage import Database

# The event loop and the audit writer thread share the GIL; at CPython's default 5 ms switch interval each waits up
# to 5 ms for the other, which caps a worker at a few hundred requests a second. 0.5 ms trades a little switching
# overhead for an order of magnitude in latency.
DEFAULT_SWITCH_INTERVAL = 0.0005
MAX_WORKERS = 64
WORKER_STARTUP_SECONDS = 10.0  # a worker exiting by itself sooner failed to start (bad app, TLS files): stop
LISTEN_BACKLOG = 2048  # uvicorn's default
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class Listen:
    """Where and how to listen: address, port, TLS (``None``: plain HTTP) and uvicorn's log level."""

    host: str = "127.0.0.1"
    port: int = 8443
    tls: TlsFiles | None = None
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not between 1 and 65535", subject="port")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}", subject="log_level")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def new_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock

    def uvicorn_options(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "log_level": self.log_level,
            "access_log": False,
            "ssl_certfile": str(self.tls.cert) if self.tls else None,
            "ssl_keyfile": str(self.tls.key) if self.tls else None,
        }


def app_for(settings: Settings, *, switch_interval: float = DEFAULT_SWITCH_INTERVAL) -> FastAPI:
    """The application a serving process runs (it sets the process's GIL switch interval too)."""
    sys.setswitchinterval(switch_interval)
    return create_app(settings)


def serve(
    settings: Settings,
    *,
    listen: Listen,
    workers: int = 1,
    switch_interval: float = DEFAULT_SWITCH_INTERVAL,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, in this process (``workers=1``) or in ``workers`` worker processes.

    ``announce`` receives one line saying what is served where, once the database checked out.

    Raises:
        ConfigError: the database is not at this version's schema, the port cannot be listened on, bad arguments.
        EnvironmentFailure: a worker process failed to start.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be between 1 and {MAX_WORKERS}", subject="workers")
    db = Database(settings.database_url)
    try:
        db.check_schema()
    finally:
        db.dispose()
    if announce is not None:
        announce(f"{db.display_url} on {listen.url} ({workers} worker(s))")
    if workers == 1:
        import uvicorn

        uvicorn.run(app_for(settings, switch_interval=switch_interval), **listen.uvicorn_options())
        return
    _supervise(settings, listen, workers, switch_interval)


def _worker(settings: Settings, listen: Listen, sock: socket.socket, switch_interval: float) -> None:
    """One worker process: uvicorn on its listening socket."""
    import uvicorn

    app = app_for(settings, switch_interval=switch_interval)
    uvicorn.Server(uvicorn.Config(app, **listen.uvicorn_options())).run(sockets=[sock])


def listening_sockets(listen: Listen, workers: int) -> list[socket.socket]:
    """One ``SO_REUSEPORT`` socket per worker (or one for all where the option does not exist), all listening."""
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        probe = listen.new_socket()  # without SO_REUSEPORT: refuses a port in use, even by another worker group
        try:
            probe.bind((listen.host, listen.port))
        finally:
            probe.close()
        for _ in range(workers if reuse_port else 1):
            sock = listen.new_socket()
            sockets.append(sock)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((listen.host, listen.port))
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}", subject="port") from None
    return sockets if reuse_port else sockets * workers


def _supervise(settings: Settings, listen: Listen, workers: int, switch_interval: float) -> None:
    """The signing service's worker processes (see :func:`supervise`)."""
    supervise(
        _worker,
        lambda sock: (settings, listen, sock, switch_interval),
        listen=listen,
        workers=workers,
        name="signery-worker",
        what="a server worker process",
        startup_seconds=WORKER_STARTUP_SECONDS,
    )


def supervise(
    target: Callable[..., None],
    args_for: Callable[[socket.socket], tuple[Any, ...]],
    *,
    listen: Listen,
    workers: int,
    name: str,
    what: str,
    startup_seconds: float,
) -> None:
    """Run ``workers`` processes of ``target(*args_for(socket))`` until SIGINT/SIGTERM, each on its listening
    socket; replace one that dies, unless it failed to start (exited by itself within ``startup_seconds``).

    Shared by the signing service and the registry: one supervisor, one shutdown order.
    """
    sockets = listening_sockets(listen, workers)
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def start(i: int) -> tuple[Any, float]:
        process = spawn.Process(target=target, args=args_for(sockets[i]), name=name, daemon=False)
        process.start()
        return process, time.monotonic()

    running = [start(i) for i in range(workers)]
    failed = False
    try:
        while not stop.wait(0.5):
            for i, (process, started) in enumerate(running):
                if process.is_alive() or stop.is_set():
                    continue
                # exitcode < 0: killed by a signal (OOM killer, an operator): replace it; >= 0: it gave up itself
                if process.exitcode >= 0 and time.monotonic() - started < startup_seconds:
                    failed = True
                    stop.set()
                    break
                running[i] = start(i)
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()
        for process, _ in running:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for sock in set(sockets):
            sock.close()
    if failed:
        raise EnvironmentFailure(f"{what} failed to start (its error is logged above)")

__all__ = ["DEFAULT_SWITCH_INTERVAL", "Listen", "app_for", "listening_sockets", "serve", "supervise"]
