"""Registry fixtures: a store and app on SQLite *and* PostgreSQL, a real uvicorn on 127.0.0.1, package builders."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from signery.registry.app import create_app
from signery.registry.settings import RegistrySettings
from signery.registry.store import RegistryStore


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> RegistrySettings:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return RegistrySettings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture()
def sqlite_settings(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(data_dir=tmp_path / "data")


@pytest.fixture()
def store(settings: RegistrySettings) -> Iterator[RegistryStore]:
    s = RegistryStore(settings)
    yield s
    s.close()


@pytest.fixture()
def token(store: RegistryStore) -> str:
    return store.create_token("ci")[1]


@pytest.fixture()
def api(store: RegistryStore) -> Iterator[TestClient]:
    with TestClient(create_app(store.settings, store=store)) as client:
        yield client


@pytest.fixture()
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class LiveRegistry:
    url: str
    store: RegistryStore
    token: str


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


def serve_in_thread(
    app: object, *, config: Callable[[int], uvicorn.Config] | None = None
) -> tuple[str, Callable[[], None]]:
    """``app`` served by uvicorn in a thread on a free port; ``config(port)`` builds another uvicorn configuration."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    made = config(port) if config else uvicorn.Config(app, log_level="warning", access_log=False)  # type: ignore[arg-type]
    server = _ThreadServer(made)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture()
def live(store: RegistryStore, token: str) -> Iterator[LiveRegistry]:
    """A real uvicorn serving the registry on 127.0.0.1 (SQLite and PostgreSQL)."""
    url, stop = serve_in_thread(create_app(store.settings, store=store))
    yield LiveRegistry(url, store, token)
    stop()


def make_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def dify_package(tmp: Path, name: str = "demo", version: str = "1.0.0", extra: str = "") -> Path:
    """A Dify-style plugin: manifest.yaml at the root of a zip."""
    return make_zip(
        tmp / f"{name}-{version}{extra}.difypkg",
        {"manifest.yaml": f"name: {name}\nversion: {version}\nauthor: acme\n", "main.py": f"print('{extra}')\n"},
    )


def mattermost_bundle(tmp: Path, plugin_id: str = "com.acme.demo", version: str = "0.3.0") -> Path:
    path = tmp / f"{plugin_id}-{version}.tar.gz"
    manifest = json.dumps({"id": plugin_id, "version": version}).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in ((f"{plugin_id}/plugin.json", manifest), (f"{plugin_id}/server/plugin.exe", b"\x7fELF")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tar_with(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            body = data.get(info.name)
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return path
