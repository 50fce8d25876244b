"""The one way platform code gets a raw Redis client (beyond Django's cache).

A client is named by its purpose, and the purpose fixes its timeouts, so a
dead or hung Redis fails each kind of caller within that caller's own bound:

* ``redis_client`` - the request path and task bodies: rate-limit and
  password-attempt scripts, circuit-breaker state, task fairness, queue
  probes, readiness checks. REDIS_TIMEOUT_SECONDS. One client (and
  connection pool) per URL and timeout per process, shared by all of them.
* ``health_probe_client`` - the cache health monitor's probe
  (``apps.caching.health``): REDIS_HEALTH_TIMEOUT_SECONDS, shorter than the
  request path's, and a pool of its own per monitor, so a probe never
  queues behind request traffic.
* ``traffic_client`` - the operator console's per-tenant traffic counters
  (written by a flusher thread, read by console pages), off the request
  path: TRAFFIC_REDIS_TIMEOUT_SECONDS, no retry on a timeout.
* ``metrics_client`` - a queue-depth reading of a Redis broker:
  METRICS_TIMEOUT_SECONDS, no retry on a timeout; a new client per reading
  (the caller closes it), as the broker URL may be read only now and then.
* ``push_connection`` - the connection on which Redis pushes invalidations
  (``apps.caching.pushed``): REDIS_TIMEOUT_SECONDS, RESP2 (the pushes then
  arrive as plain pub/sub messages); a new, unconnected connection per
  subscription, held outside any pool.

A setting changed at run time (tests) gets a client of its own: shared
clients are keyed by URL and timeout, not only by URL.
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


def redis_client(url: str | None = None) -> redis.Redis:
    """The shared client for the request path and task bodies."""
    return _client("request", url or settings.REDIS_URL, settings.REDIS_TIMEOUT_SECONDS)


def traffic_client(url: str | None = None) -> redis.Redis:
    """The shared client for the console's traffic counters."""
    return _client("traffic", url or settings.REDIS_URL, settings.TRAFFIC_REDIS_TIMEOUT_SECONDS)


def health_probe_client(url: str) -> redis.Redis:
    """A new client for one health monitor's probes."""
    timeout = settings.REDIS_HEALTH_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def metrics_client(url: str) -> redis.Redis:
    """A new client for one metrics reading; close it after use."""
    timeout = settings.METRICS_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False)


def push_connection(url: str) -> redis.connection.AbstractConnection:
    """A new, unconnected connection for watching pushed invalidations."""
    timeout = settings.REDIS_TIMEOUT_SECONDS
    pool = redis.ConnectionPool.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, protocol=2)
    return pool.make_connection()


@cache
def _client(purpose: str, url: str, timeout: float) -> redis.Redis:
    if purpose == "traffic":
        return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                    retry_on_timeout=False)
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
