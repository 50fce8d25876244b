"""The one way platform code gets a raw Redis client (beyond Django's cache):
rate-limit scripts, circuit-breaker state, readiness checks, probes.

One client (and connection pool) per URL and process, with the platform's
short timeouts, so a dead Redis fails fast everywhere alike.
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


def redis_client(url: str | None = None) -> redis.Redis:
    return _client(url or settings.REDIS_URL, settings.REDIS_TIMEOUT_SECONDS)


@cache
def _client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
