"""Token buckets per caller: a steady rate with bursts, refusals carry how long to wait (``Retry-After``)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

MAX_BUCKETS = 100_000  # callers tracked per process; the least recently seen are forgotten (they refill anyway)


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
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return wait
