"""Token buckets: all buckets of one request decided together, atomically,
in Redis (one round trip, one Lua script), or in this process when Redis is
unreachable.

All or nothing: a request passes only when every one of its buckets has a
token, and then takes one from each; a refused request takes none. So a
caller refused by its own bucket (an API key over its share) does not spend
the budget it shares with others (its tenant's).

Written here rather than taken from django-ratelimit / DRF throttles: those
count fixed windows in the cache with separate get/set calls (not exact under
concurrency), and have no per-tenant plan limits or fallback.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol, TypeVar

import redis
from django.conf import settings

from apps.caching import health
from apps.caching.connections import redis_client

T = TypeVar("T")

# KEYS: the buckets; ARGV[1]: cost, then per bucket: capacity, refill per
# second, ttl seconds. Returns {allowed, tokens of each bucket}.
# Time comes from the Redis server, so every client agrees on it.
TOKEN_BUCKETS = """
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil then
    tokens = capacity
    ts = now
  end
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
  if tokens < cost then
    allowed = 0
  end
  levels[i] = tokens
end
local result = {allowed}
for i, key in ipairs(KEYS) do
  local tokens = levels[i]
  if allowed == 1 then
    tokens = tokens - cost
  end
  redis.call('HSET', key, 'tokens', tokens, 'ts', now)
  redis.call('EXPIRE', key, tonumber(ARGV[3 * i + 1]))
  result[i + 1] = tostring(tokens)
end
return result
"""


TOKEN_BUCKETS_SHA = hashlib.sha1(TOKEN_BUCKETS.encode()).hexdigest()


class Piggyback(Protocol):
    """Commands sent in the same round trip as the rate-limit script (the
    request's cached entry, ``apps.tenancy.tenant_cache.Prefetch``)."""

    def add(self, pipe) -> None: ...

    def done(self, result) -> None: ...  # its reply, or the RedisError it got


@dataclass(frozen=True)
class Bucket:
    """One limit a request must pass: ``per_minute`` refill, ``burst`` capacity."""

    key: str
    per_minute: float
    burst: int | None = None

    @property
    def capacity(self) -> int:
        return self.burst or self.per_minute

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def ttl(self) -> int:  # a full bucket needs no state
        return max(60, math.ceil(self.capacity / self.per_second) + 60) if self.per_second else 3600


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # seconds until one more request would pass (0 if allowed)
    backend: str  # "redis" | "local"
    key: str = ""


def _decision(bucket: Bucket, allowed: bool, tokens: float, cost: int, backend: str) -> Decision:
    per_second = bucket.per_second
    short = cost - tokens  # > 0: this bucket is one that refused
    if allowed or short <= 0:
        retry_after = 0
    else:
        retry_after = max(1, math.ceil(short / per_second)) if per_second else bucket.ttl
    return Decision(
        allowed=allowed, limit=bucket.capacity, remaining=max(0, int(tokens)),
        reset_seconds=math.ceil((bucket.capacity - tokens) / per_second) if per_second else 0,
        retry_after=retry_after,
        backend=backend, key=bucket.key,
    )


def tightest(decisions: list[Decision]) -> Decision:
    """The decision to report: when refused, the bucket that takes longest to
    allow one more request; when allowed, the one with the fewest left."""
    refused = [d for d in decisions if d.retry_after]
    if refused:
        return max(refused, key=lambda d: d.retry_after)
    return min(decisions, key=lambda d: d.remaining)


@cache
def _script(url: str):
    return redis_client(url).register_script(TOKEN_BUCKETS)


class LocalBuckets:
    """The fallback: token buckets in this process's memory, all or nothing
    like the Redis script.

    Each worker process then enforces the whole limit on its own, so a
    tenant may get up to (processes x limit) while Redis is down: generous
    rather than failing requests, and bounded.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take_all(self, buckets: list[Bucket], cost: int = 1) -> tuple[bool, list[float]]:
        now = time.monotonic()
        with self._lock:
            levels = []
            for bucket in buckets:
                tokens, ts = self._state.get(bucket.key, (float(bucket.capacity), now))
                levels.append(min(bucket.capacity, tokens + (now - ts) * bucket.per_second))
            allowed = all(tokens >= cost for tokens in levels)
            if allowed:
                levels = [tokens - cost for tokens in levels]
            if len(self._state) > 100_000:
                self._state.clear()
            for bucket, tokens in zip(buckets, levels, strict=True):
                self._state[bucket.key] = (tokens, now)
            return allowed, levels

    def take(self, key: str, capacity: int, per_second: float, cost: int = 1) -> tuple[bool, float]:
        allowed, (tokens,) = self.take_all([Bucket(key, per_minute=per_second * 60, burst=capacity)], cost)
        return allowed, tokens


local_buckets = LocalBuckets()


def redis_or_local(remote: Callable[[str], T], local: Callable[[], T]) -> T:
    """``remote(redis_url)``, or ``local()`` when Redis fails (each call is
    bounded by REDIS_TIMEOUT_SECONDS) or failed in this process within the
    last RATE_LIMIT_REDIS_RETRY_SECONDS (``apps.caching.health.suspect``):
    a Redis that hangs then costs one timeout per process and retry period,
    not one per request."""
    url = settings.REDIS_URL
    if not health.suspect(settings.RATE_LIMIT_REDIS_RETRY_SECONDS, url):
        try:
            result = remote(url)
        except redis.exceptions.RedisError:
            health.record_failure(url)
        else:
            health.record_success(url)
            return result
    return local()


def take_all(buckets: list[Bucket], *, cost: int = 1, piggyback: Piggyback | None = None) -> list[Decision]:
    """Take ``cost`` tokens from every bucket, or from none when any of them
    has too few. One decision per bucket, in order. ``piggyback``'s commands
    go in the same round trip (a pipeline), when Redis is used at all."""
    keys = [f"{settings.RATE_LIMIT_PREFIX}:{bucket.key}" for bucket in buckets]
    args = [cost]
    for bucket in buckets:
        args += [bucket.capacity, bucket.per_second, bucket.ttl]

    def remote(url: str) -> list[Decision]:
        if piggyback is None:
            allowed, *levels = _script(url)(keys=keys, args=args)
        else:
            allowed, *levels = _with_piggyback(url, keys, args, piggyback)
        return [_decision(b, bool(allowed), float(t), cost, "redis") for b, t in zip(buckets, levels, strict=True)]

    def local() -> list[Decision]:
        allowed, levels = local_buckets.take_all(buckets, cost)
        return [_decision(b, allowed, t, cost, "local") for b, t in zip(buckets, levels, strict=True)]

    return redis_or_local(remote, local)


def _with_piggyback(url: str, keys: list[str], args: list, piggyback: Piggyback) -> list:
    """The bucket script and ``piggyback`` in one pipeline (no MULTI: the
    script is atomic on its own). EVALSHA, not a registered Script: a
    pipeline with one checks SCRIPT EXISTS first, a round trip of its own."""
    pipe = redis_client(url).pipeline(transaction=False)
    pipe.evalsha(TOKEN_BUCKETS_SHA, len(keys), *keys, *args)
    piggyback.add(pipe)
    try:
        buckets_reply, *rest = pipe.execute(raise_on_error=False)
    except redis.exceptions.RedisError as exc:
        piggyback.done(exc)
        raise
    piggyback.done(rest[0] if len(rest) == 1 else rest)
    if isinstance(buckets_reply, redis.exceptions.NoScriptError):  # a restarted Redis: load and run it
        return _script(url)(keys=keys, args=args)
    if isinstance(buckets_reply, Exception):
        raise buckets_reply
    return buckets_reply


def take(key: str, *, per_minute: int, burst: int | None = None, cost: int = 1) -> Decision:
    """Take ``cost`` tokens from bucket ``key`` refilled at ``per_minute``."""
    return take_all([Bucket(key, per_minute, burst)], cost=cost)[0]
