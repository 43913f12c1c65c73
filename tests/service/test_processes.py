"""Real server processes: two sharing one PostgreSQL, concurrent load, SIGKILL in the middle of work."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest
from servers import init_service, run_cli, running, start_server
from sqlalchemy import select

from signery.service.audit import verify_chain
from signery.service.envelope import SealedKey, open_private_key
from signery.service.keys.cache import KEY_CACHE_SECONDS
from signery.service.settings import MasterKey
from signery.service.storage import AuditRow, Database, KeyRow, KeyVersionRow


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_two_processes_one_postgres_one_chain(tmp_path: Path, postgres_url: str) -> None:
    admin = init_service(tmp_path, postgres_url)
    h = {"X-API-Key": admin}
    with running(tmp_path, postgres_url, workers=2) as a, running(tmp_path, postgres_url) as b:
        r = httpx.post(f"{a.url}/v1/keys", json={"name": "shared", "type": "ecdsa-p256"}, headers=h)
        assert r.status_code == 201
        kid = r.json()["versions"][0]["key_id"]
        r = httpx.post(f"{b.url}/v1/keys/shared/sign", json={"message": b64(b"x")}, headers=h)
        assert r.status_code == 200 and r.json()["key_id"] == kid
        errors: list[str] = []
        per_thread = 40

        def load(base: str, n: int) -> None:
            with httpx.Client(base_url=base, headers=h, timeout=30) as c:
                for i in range(per_thread):
                    if i % 10 == 0:
                        r = c.post("/v1/keys", json={"name": f"k-{base[-5:]}-{n}-{i}", "type": "ed25519"})
                    else:
                        r = c.post("/v1/keys/shared/sign", json={"digest": b64(hashlib.sha256(bytes([i])).digest())})
                    if r.status_code not in (200, 201):
                        errors.append(r.text)

        threads = [threading.Thread(target=load, args=(srv.url, n)) for srv in (a, b) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # a key rotated through one is used at its new version through the other (once its cache ages out)
        httpx.post(f"{a.url}/v1/keys/shared/rotate", headers=h)
        time.sleep(KEY_CACHE_SECONDS + 0.2)
        assert httpx.post(f"{b.url}/v1/keys/shared/sign", json={"message": b64(b"y")}, headers=h).json()["version"] == 2
    db = Database(postgres_url)
    report = verify_chain(db)
    with db.session() as s:
        rows = list(s.scalars(select(AuditRow).order_by(AuditRow.seq)))
    db.dispose()
    signs = [r for r in rows if r.action == "sign" and r.result == "ok"]
    assert len(signs) == 1 + 6 * 36 + 1
    assert [r.seq for r in rows] == list(range(1, report.rows + 1))
    out = run_cli("server", "audit", "verify", "--database-url", postgres_url, home=tmp_path)
    assert out.returncode == 0 and f"{report.rows} rows" in out.stdout


def _check_consistent(url: str, master: MasterKey) -> tuple[int, int]:
    """No half-created key (every key has all its versions, each opens), and an unbroken chain."""
    db = Database(url)
    try:
        report = verify_chain(db)
        with db.session() as s:
            keys = list(s.scalars(select(KeyRow)))
            for k in keys:
                versions = list(s.scalars(select(KeyVersionRow).where(KeyVersionRow.name == k.name)))
                assert sorted(v.version for v in versions) == list(range(1, k.latest_version + 1)), k.name
                for v in versions:
                    sealed = SealedKey(v.wrapped_data_key, v.encrypted_private_key, v.master_key_id)
                    open_private_key(sealed, master=master, name=v.name, version=v.version, key_id=v.key_id)
            creations = s.scalars(select(AuditRow).where(AuditRow.action == "key.create")).all()
            assert len(creations) == len(keys), "a key without its audit row, or an audit row without its key"
        return len(keys), report.rows
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_work_leaves_no_half_key_and_an_unbroken_chain(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'svc.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    admin = init_service(tmp_path, url)
    master = MasterKey.from_file(tmp_path / "master.key")
    h = {"X-API-Key": admin}
    server = start_server(tmp_path, url)
    httpx.post(f"{server.url}/v1/keys", json={"name": "s", "type": "ed25519"}, headers=h)
    stop = threading.Event()

    def hammer(kind: str) -> None:
        with httpx.Client(base_url=server.url, headers=h, timeout=5) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if kind == "create":  # RSA-3072 generation is slow, so the kill lands inside one
                        c.post("/v1/keys", json={"name": f"rsa-{i}", "type": "rsa-3072"})
                    else:
                        c.post("/v1/keys/s/sign", json={"message": b64(str(i).encode())})
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=hammer, args=(k,)) for k in ("create", "create", "sign", "sign")]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    keys, rows = _check_consistent(url, master)
    assert keys >= 1 and rows >= 3
    # the database is usable again at once
    with running(tmp_path, url) as again:
        r = httpx.post(f"{again.url}/v1/keys", json={"name": "after", "type": "ed25519"}, headers=h)
        assert r.status_code == 201
        assert httpx.post(f"{again.url}/v1/keys/s/sign", json={"message": b64(b"z")}, headers=h).status_code == 200
    _check_consistent(url, master)


def test_server_refuses_to_start_without_master_key_or_schema(tmp_path: Path, home: Path) -> None:
    from click.testing import CliRunner

    from signery.cli import cli

    url = f"sqlite:///{tmp_path / 'svc.db'}"
    runner = CliRunner()
    out = runner.invoke(cli, ["server", "--database-url", url, "--port", "1"])
    assert out.exit_code == 3 and "master key" in out.output and "signery server init" in out.output
    (home / "master.key").write_text(MasterKey(b"k" * 32).to_text())
    out = runner.invoke(cli, ["server", "--database-url", url, "--port", "1"])
    assert out.exit_code == 3 and "signery server migrate" in out.output
    out = runner.invoke(cli, ["server", "--database-url", url], env={"SIGNERY_MASTER_KEY": "short"})
    assert out.exit_code == 3 and "SIGNERY_MASTER_KEY" in out.output
