"""Token buckets: atomic in Redis (one round trip, a Lua script), or in this
process when Redis is unreachable.

Written here rather than taken from django-ratelimit / DRF throttles: those
count fixed windows in the cache with separate get/set calls (not exact under
concurrency), and have no per-tenant plan limits or fallback.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

from apps.caching.connections import redis_client

# KEYS[1]: bucket; ARGV: capacity, refill per second, cost, ttl seconds.
# Time comes from the Redis server, so every client agrees on it.
TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + (now - ts) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], ttl)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # seconds until one more request would pass (0 if allowed)
    backend: str  # "redis" | "local"


def _decision(allowed: bool, tokens: float, capacity: int, per_second: float, backend: str) -> Decision:
    missing = capacity - tokens
    return Decision(
        allowed=allowed, limit=capacity, remaining=max(0, int(tokens)),
        reset_seconds=math.ceil(missing / per_second) if per_second else 0,
        retry_after=0 if allowed else max(1, math.ceil((1 - tokens) / per_second)),
        backend=backend,
    )


@cache
def _script(url: str):
    return redis_client(url).register_script(TOKEN_BUCKET)


class LocalBuckets:
    """The fallback: token buckets in this process's memory.

    Each worker process then enforces the whole limit on its own, so a
    tenant may get up to (processes x limit) while Redis is down: generous
    rather than failing requests, and bounded.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, capacity: int, per_second: float, cost: int = 1) -> tuple[bool, float]:
        now = time.monotonic()
        with self._lock:
            tokens, ts = self._state.get(key, (float(capacity), now))
            tokens = min(capacity, tokens + (now - ts) * per_second)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            self._state[key] = (tokens, now)
            if len(self._state) > 100_000:
                self._state.clear()
            return allowed, tokens


local_buckets = LocalBuckets()


def take(key: str, *, per_minute: int, burst: int | None = None, cost: int = 1) -> Decision:
    """Take ``cost`` tokens from bucket ``key`` refilled at ``per_minute``."""
    capacity = burst or per_minute
    per_second = per_minute / 60.0
    ttl = max(60, math.ceil(capacity / per_second) + 60)
    try:
        allowed, tokens = _script(settings.REDIS_URL)(keys=[f"{settings.RATE_LIMIT_PREFIX}:{key}"], args=[capacity, per_second, cost, ttl])
        return _decision(bool(allowed), float(tokens), capacity, per_second, "redis")
    except redis.exceptions.RedisError:
        allowed, tokens = local_buckets.take(key, capacity, per_second, cost)
        return _decision(allowed, tokens, capacity, per_second, "local")
