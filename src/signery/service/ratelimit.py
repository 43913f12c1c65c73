"""Token buckets: a steady rate with bursts; refusals carry how long to wait (``Retry-After``).

:class:`SharedRateLimiter` holds each API key's bucket in the database, so the rate holds across worker processes and
across servers on one database. A process does not touch the database per request: it leases a small batch of
tokens in one short transaction and spends them locally. Leased tokens that are not spent within
:data:`LEASE_SECONDS` are dropped (the database counted them as spent), so over any interval all processes together
grant at most ``burst + rate * interval`` plus one lease per process. Refill is computed from the database's clock,
so servers with skewed clocks still agree.

:class:`RateLimiter` is the in-process bucket, for callers without a valid API key (keyed by address; holding those
in the database would let anyone with many addresses make it write).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import Connection

from .storage import Database

MAX_BUCKETS = 100_000  # callers tracked per process; the least recently seen are forgotten (they refill anyway)
LEASE_SECONDS = 1.0  # leased tokens not spent within this are dropped: no process sits on old tokens
LEASE_SPAN = 0.05  # a lease is about this many seconds' worth of the rate...
MAX_LEASE = 1000  # ...but never more than this many tokens, nor more than an eighth of the burst (at least one)


def _wait(deficit: float, rate: float) -> int:
    """Whole seconds until ``deficit`` tokens have refilled (at least 1: ``Retry-After`` counts seconds)."""
    return max(1, math.ceil(deficit / rate))


class RateLimiter:
    """``take(key)`` returns 0 when allowed, else the whole seconds to wait before a token is available."""

    def __init__(self, *, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                self._buckets.move_to_end(key)
                wait = 0
            else:
                self._buckets[key] = (tokens, now)
                wait = _wait(1.0 - tokens, self.rate)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return wait


@dataclass
class _Lease:
    tokens: int = 0  # leased from the database, not yet spent
    expires: float = 0.0  # monotonic time after which unspent tokens are dropped
    empty_until: float = 0.0  # monotonic time before which the database bucket has no whole token


# The database's own clock, in seconds since the epoch (SQLite: millisecond resolution).
_SQLITE_SQL = (
    "INSERT INTO rate_buckets (key, tokens, updated) VALUES (?, ?, (julianday('now') - 2440587.5) * 86400.0)"
    " ON CONFLICT (key) DO NOTHING",
    "SELECT tokens, updated, (julianday('now') - 2440587.5) * 86400.0 FROM rate_buckets WHERE key = ?",
    "UPDATE rate_buckets SET tokens = ?, updated = ? WHERE key = ?",
)
_PG_SQL = (
    "INSERT INTO rate_buckets (key, tokens, updated) VALUES (%s, %s, EXTRACT(EPOCH FROM clock_timestamp()))"
    " ON CONFLICT (key) DO NOTHING",
    "SELECT tokens, updated, EXTRACT(EPOCH FROM clock_timestamp()) FROM rate_buckets WHERE key = %s FOR UPDATE",
    "UPDATE rate_buckets SET tokens = %s, updated = %s WHERE key = %s",
)


class SharedRateLimiter:
    """Per-key token buckets in the database, spent locally in leases (see the module docstring).

    :meth:`take_local` answers from this process's lease without blocking, or says (``None``) that a lease is
    needed; :meth:`take` (blocking: the database) leases and answers. Both return 0 when allowed, else the whole
    seconds to wait.
    """

    def __init__(self, db: Database, *, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.db, self.rate, self.burst = db, rate, burst
        self.lease_size = max(1, min(MAX_LEASE, math.ceil(rate * LEASE_SPAN), burst // 8))
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        self._lock = threading.Lock()  # guards _leases
        self._lease_locks: dict[str, threading.Lock] = {}  # one database lease at a time per key

    def take_local(self, key: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(key)
            if lease is None:
                return None
            if lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                return 0
            if now < lease.empty_until:
                return max(1, math.ceil(lease.empty_until - now))
        return None

    def take(self, key: str) -> int:
        answer = self.take_local(key)
        if answer is not None:
            return answer
        with self._lock:
            lease_lock = self._lease_locks.setdefault(key, threading.Lock())
        with lease_lock:
            answer = self.take_local(key)  # another thread may have leased meanwhile
            if answer is not None:
                return answer
            with self.db.connection() as conn:
                granted, deficit = self._lease(conn, key)
            now = time.monotonic()
            with self._lock:
                # The first leased token is this request's; the rest wait in the lease for the next ones.
                self._leases[key] = _Lease(
                    tokens=max(0, granted - 1),
                    expires=now + LEASE_SECONDS,
                    empty_until=now + deficit / self.rate if granted == 0 else 0.0,
                )
                self._leases.move_to_end(key)
                while len(self._leases) > MAX_BUCKETS:
                    old, _ = self._leases.popitem(last=False)
                    self._lease_locks.pop(old, None)
        return 0 if granted else _wait(deficit, self.rate)

    def _lease(self, conn: Connection, key: str) -> tuple[int, float]:
        """In one transaction: refill ``key``'s bucket to now and take up to a lease; (granted, tokens missing)."""
        insert, select, update = _PG_SQL if conn.dialect.name == "postgresql" else _SQLITE_SQL
        conn.exec_driver_sql(insert, (key, float(self.burst)))
        tokens, updated, now = conn.exec_driver_sql(select, (key,)).one()
        available = min(float(self.burst), float(tokens) + max(0.0, float(now) - float(updated)) * self.rate)
        granted = min(self.lease_size, math.floor(available))
        conn.exec_driver_sql(update, (available - granted, float(now), key))
        return granted, (1.0 - available if granted == 0 else 0.0)
