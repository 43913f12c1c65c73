"""The per-API-key rate limit holds across processes and servers sharing one database (SQLite and PostgreSQL).

The bound checked everywhere: over an interval T, all processes together grant at most burst + rate * T plus one
lease per process (tokens a process leased just before the interval).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from servers import init_service, run_cli, running

from signery.errors import ConfigError
from signery.service import MasterKey, Settings, create_app
from signery.service.ratelimit import LEASE_SECONDS, SharedRateLimiter
from signery.service.storage import MIGRATIONS, Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _migrated(url: str) -> Database:
    db = Database(url)
    db.migrate()
    return db


def test_lease_size_follows_rate_and_burst(tmp_path: Path) -> None:
    db = _migrated(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        assert SharedRateLimiter(db, rate=200, burst=400).lease_size == 10  # 50 ms of the rate
        assert SharedRateLimiter(db, rate=1e6, burst=10**6).lease_size == 1000  # capped
        assert SharedRateLimiter(db, rate=1000, burst=16).lease_size == 2  # an eighth of the burst
        assert SharedRateLimiter(db, rate=5, burst=20).lease_size == 1
    finally:
        db.dispose()


def test_limiters_on_separate_handles_share_one_bucket(db_url: str) -> None:
    """Three limiters on three database handles (as three processes have), hammered from threads."""
    rate, burst = 50.0, 80
    dbs = [_migrated(db_url)] + [Database(db_url) for _ in range(2)]
    limiters = [SharedRateLimiter(db, rate=rate, burst=burst) for db in dbs]
    lease = limiters[0].lease_size
    granted: Counter[int] = Counter()
    waits: list[int] = []
    lock = threading.Lock()
    stop = time.monotonic() + 1.5
    start = time.monotonic()

    def hammer(i: int) -> None:
        limiter = limiters[i % len(limiters)]
        while time.monotonic() < stop:
            wait = limiter.take("key-a")
            with lock:
                if wait == 0:
                    granted[i % len(limiters)] += 1
                else:
                    waits.append(wait)
            if wait:
                time.sleep(0.002)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    for db in dbs:
        db.dispose()
    total = sum(granted.values())
    assert total <= burst + rate * elapsed + len(limiters) * lease, (total, elapsed)
    assert total >= burst - len(limiters) * lease, total
    assert len(granted) == len(limiters), "every process got tokens from the shared bucket"
    assert waits and min(waits) >= 1


def test_unspent_lease_expires(tmp_path: Path) -> None:
    db = _migrated(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        limiter = SharedRateLimiter(db, rate=100, burst=800)
        assert limiter.lease_size == 5
        assert limiter.take("k") == 0
        assert limiter.take_local("k") == 0  # from the lease, no database
        time.sleep(LEASE_SECONDS + 0.1)
        assert limiter.take_local("k") is None  # the rest of the lease was dropped
    finally:
        db.dispose()


def test_empty_bucket_is_answered_locally_until_it_refills(tmp_path: Path) -> None:
    db = _migrated(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        limiter = SharedRateLimiter(db, rate=0.5, burst=1)
        assert limiter.take("k") == 0
        assert limiter.take("k") == 2  # one token at 0.5/s: 2 s
        assert limiter.take_local("k") in (1, 2)  # refused without asking the database again
    finally:
        db.dispose()


def test_two_servers_three_processes_one_budget(tmp_path: Path, db_url: str) -> None:
    """A burst through two real servers (one with two workers) on one database: the budget is the database's."""
    rate, burst = 5.0, 20
    admin = init_service(tmp_path, db_url)
    h = {"X-API-Key": admin}
    limits = ("--rate-limit", str(rate), "--burst", str(burst))
    with running(tmp_path, db_url, workers=2, extra=limits) as a, running(tmp_path, db_url, extra=limits) as b:
        assert httpx.post(f"{a.url}/v1/keys", json={"name": "k", "type": "ed25519"}, headers=h).status_code == 201
        out = run_cli("server", "api-key", "create", "--name", "ci", "--scope", "sign:k", "--database-url", db_url,
                      home=tmp_path)  # fmt: skip
        ci = {"X-API-Key": out.stdout.strip().splitlines()[-1]}
        statuses: Counter[int] = Counter()
        retry_after: list[str] = []
        lock = threading.Lock()
        body = {"message": base64.b64encode(b"artifact").decode()}
        start = time.monotonic()

        def burst_through(url: str) -> None:
            with httpx.Client(base_url=url, headers=ci, timeout=30) as c:  # fresh connections: both workers serve
                for _ in range(25):
                    r = c.post("/v1/keys/k/sign", json=body)
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 429:
                            retry_after.append(r.headers["Retry-After"])

        threads = [threading.Thread(target=burst_through, args=(s.url,)) for s in (a, b, a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
    processes = 3
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] <= burst + rate * elapsed + processes, (statuses, elapsed)
    assert statuses[200] >= burst - processes, statuses
    assert statuses[429] > 0 and all(int(v) >= 1 for v in retry_after)
    # Per-process buckets (the old behaviour) would have granted up to a full burst in each process.
    assert statuses[200] < 2 * burst


def test_database_before_the_buckets_table_is_refused_then_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    MIGRATIONS.upgrade(db.engine, display=db.display_url, revision="0001")
    db.dispose()
    with pytest.raises(ConfigError, match="at schema 0001, this server needs 0004") as refused:
        create_app(Settings(database_url=url, master_key=MasterKey(b"k" * 32)))
    assert "signery server migrate" in (refused.value.hint or "")
    out = run_cli("server", "migrate", "--database-url", url, home=tmp_path)
    assert out.returncode == 0 and "0001 -> 0004" in out.stdout
    create_app(Settings(database_url=url, master_key=MasterKey(b"k" * 32))).state.db.dispose()
