"""The download fast path (``registry/fastpath.py``) and the sendfile protocol (``registry/sendfile.py``): the bytes
and headers are the route's, over ``os.sendfile`` and without it, for fast and slow readers; what the fast path
does not serve (conditional, ``Range``, unknown names) is the route's answer."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from signery.registry.app import create_app
from signery.registry.runner import uvicorn_config
from signery.registry.settings import RegistrySettings
from signery.registry.store import RegistryStore
from signery.service.runner import Listen

from .conftest import serve_in_thread
from .hostkit import dify_zip, elastic_zip, mattermost_bundle

BIG = 6 << 20  # over the socket buffers (the sender waits for the reader) and over the whole-read limit
ROUTE_ONLY = {"If-None-Match": '"not-this-one"'}  # the fast path hands conditional requests to the route


def _serve(app: Any, *, sendfile: bool) -> tuple[str, Callable[[], None]]:
    if not sendfile:
        return serve_in_thread(app)
    return serve_in_thread(app, config=lambda port: uvicorn_config(app, Listen(host="127.0.0.1", port=port)))


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryStore, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("fastpath")
    store = RegistryStore(RegistrySettings(data_dir=tmp / "data"))
    publisher = store.authenticate(store.create_token("ci")[1])
    filler = os.urandom(BIG)
    files = [
        elastic_zip(tmp / "e", "big_pkg", "1.0.0"),
        mattermost_bundle(tmp / "m", "com.acme.big", "1.0.0"),
        dify_zip(tmp / "d", "acme", "big", "1.0.0", filler=filler),
    ]
    for path in files:
        staged = store.blobs.stage(max_size=1 << 30)
        staged.write(path.read_bytes())
        sha, _ = staged.commit()
        store.publish(publisher, package_sha256=sha, filename=path.name)
    paths = {
        "elastic": "/elastic/epr/big_pkg/big_pkg-1.0.0.zip",
        "mattermost": f"/mattermost/plugins/com.acme.big/1.0.0/{files[1].name}",
        "dify": "/dify/api/v1/plugins/acme/big/1.0.0/download",
    }
    yield store, {**paths, **{f"{k}.file": str(p) for k, p in zip(paths, files, strict=True)}}
    store.close()


@pytest.mark.parametrize("sendfile", [True, False], ids=["sendfile", "plain-uvicorn"])
def test_downloads_are_the_routes(
    published: tuple[RegistryStore, dict[str, str]], sendfile: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, paths = published
    calls: list[int] = []
    real = os.sendfile

    def counted(out: int, fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        return real(out, fd, offset, count)

    monkeypatch.setattr(os, "sendfile", counted)
    url, stop = _serve(create_app(store.settings, store=store), sendfile=sendfile)
    try:
        with httpx.Client(base_url=url) as http:
            for proto in ("elastic", "mattermost", "dify"):
                expected = Path(paths[f"{proto}.file"]).read_bytes()
                for _ in range(3):  # keep-alive: one connection, several responses
                    fast = http.get(paths[proto])
                    assert fast.status_code == 200 and fast.content == expected, proto
                route = http.get(paths[proto], headers=ROUTE_ONLY)
                assert route.status_code == 200 and route.content == expected
                for header in ("etag", "content-length", "content-type", "content-disposition", "cache-control"):
                    assert fast.headers[header] == route.headers[header], (proto, header)
                assert fast.headers["x-content-sha256"] == hashlib.sha256(expected).hexdigest()
                etag = fast.headers["etag"]
                assert http.get(paths[proto], headers={"If-None-Match": etag}).status_code == 304
                partial = http.get(paths[proto], headers={"Range": "bytes=0-9"})
                assert partial.status_code == 206 and partial.content == expected[:10]
            assert http.get("/elastic/epr/big_pkg/big_pkg-9.9.9.zip").status_code == 404
            assert http.get("/dify/api/v1/plugins/other/big/1.0.0/download").status_code == 404
            assert http.get("/mattermost/plugins/com.acme.big/1.0.0/other.tar.gz").status_code == 404
            assert http.get("/elastic/epr/Big/Big-1.0.0.zip").status_code == 400
            first = http.get("/elastic/search?package=big_pkg")
            again = http.get("/elastic/search?package=big_pkg")  # from the cache, before FastAPI
            assert first.status_code == again.status_code == 200 and first.content == again.content
            assert again.headers["content-type"] == "application/json"
            assert [p["name"] for p in again.json()] == ["big_pkg"]
        assert bool(calls) == sendfile  # zero-copy exactly when the server offers http.response.pathsend
    finally:
        stop()


def test_slow_reader_and_abandoned_download(published: tuple[RegistryStore, dict[str, str]]) -> None:
    store, paths = published
    url, stop = _serve(create_app(store.settings, store=store), sendfile=True)
    try:
        expected = Path(paths["dify.file"]).read_bytes()
        with httpx.Client(base_url=url) as http:
            got = b""
            with http.stream("GET", paths["dify"]) as r:
                for chunk in r.iter_bytes(256 << 10):
                    got += chunk
                    time.sleep(0.005)
            assert got == expected
            with http.stream("GET", paths["dify"]) as r:  # read a little, then hang up
                next(r.iter_bytes(1024))
        with httpx.Client(base_url=url) as http:  # the server is still serving
            assert http.get(paths["dify"]).content == expected
    finally:
        stop()
