"""Token buckets: per API key and per client address (docs/security.md, "Rate limits").

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; a request takes one. An empty
bucket answers how long until the next token (the 429's Retry-After). Tables are bounded: past MAX_TRACKED
keys the least recently used bucket is forgotten (a forgotten bucket is a full one, so eviction never refuses
anyone; holding more than MAX_TRACKED addresses busy at once is needed to gain anything from it).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = [
    "DEFAULT_CLIENT_BURST",
    "DEFAULT_CLIENT_RATE",
    "DEFAULT_KEY_BURST",
    "DEFAULT_KEY_RATE",
    "MAX_TRACKED",
    "BucketTable",
    "retry_after_seconds",
]

#: Requests per second per client address, and how many may come at once. The SDK's default batching sends a
#: 100,000-record burst as 100 requests of 1,000 records: within the burst, so it is never throttled.
DEFAULT_CLIENT_RATE = 100.0
DEFAULT_CLIENT_BURST = 200
#: Requests per second per API key (a fleet of services usually shares one ingest key), and its burst.
DEFAULT_KEY_RATE = 1000.0
DEFAULT_KEY_BURST = 2000
#: Buckets kept per table (each ~100 bytes).
MAX_TRACKED = 10_000


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class BucketTable:
    """One token bucket per key (`rate` tokens/s, at most `burst`). ValueError: rate <= 0 or burst < 1."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate: must be > 0 requests per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst: must be >= 1, got {burst}")
        self.rate, self.burst, self.max_tracked = rate, burst, max_tracked
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when granted, else the seconds until one is available (> 0)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after_seconds(wait: float) -> str:
    """The Retry-After value for a wait in seconds: whole seconds, at least 1 (HTTP has no fractions)."""
    return str(max(1, math.ceil(wait)))
