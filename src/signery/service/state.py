"""What every request of one service process shares: the database, the audit writer, the keys, the rate limits."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .apikeys import Caller
from .audit import AuditWriter
from .keys.cache import KeyCache
from .ratelimit import RateLimiter, SharedRateLimiter
from .settings import MasterKey
from .storage import Database


@dataclass
class ServiceState:
    db: Database
    audit: AuditWriter
    keys: KeyCache  # key descriptions and unsealed private keys, per process
    limiter: SharedRateLimiter  # API keys: one bucket each, shared through the database
    anon_limiter: RateLimiter  # callers without a valid API key, by address, per process
    auth_cache: dict[str, tuple[Caller, float]]
    auth_lock: threading.Lock

    @property
    def master(self) -> MasterKey:
        """The master key that seals new key versions (and opens them, through :attr:`keys`)."""
        return self.keys.master

    def forget_callers(self) -> None:
        with self.auth_lock:
            self.auth_cache.clear()
