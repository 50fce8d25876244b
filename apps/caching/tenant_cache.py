"""Read-through caching of tenant data.

* Tenant-scoped keys: every key contains the active tenant's id, taken from
  the tenant context, never from the caller; one tenant cannot address
  another's entries.
* Versioned namespaces: writers bump a namespace's version (``invalidate``)
  instead of finding keys to delete; old entries just age out.
* TTL with jitter: entries of one namespace do not all expire together.
* Stampede protection: an entry carries a soft expiry before its hard TTL.
  When it goes stale, one caller takes a short lock and recomputes while the
  others keep serving the stale value; on a cold miss the others wait
  briefly for the winner instead of all hitting the database.
* Redis down: every call computes directly (the cache is an optimisation).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from apps.observability import metrics
from apps.tenancy.context import require_active_tenant
from apps.tenancy.routers import tenant_write_alias

logger = logging.getLogger(__name__)

_MISS = object()
LOCK_SECONDS = 10
COLD_WAIT_SECONDS = 1.0
GRACE_FACTOR = 2  # a stale entry stays servable this many soft-TTLs longer


def _client():
    return get_redis_connection("default")


def _prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:tc:t{require_active_tenant().pk}"


def _version(namespace: str) -> int:
    value = _client().get(f"{_prefix()}:{namespace}:version")
    return int(value) if value else 0


def _key(namespace: str, key: str) -> str:
    return f"{_prefix()}:{namespace}:v{_version(namespace)}:{key}"


def _pickle():
    import pickle

    return pickle


def get_or_compute(namespace: str, key: str, compute: Callable[[], Any], *, ttl: int | None = None) -> Any:
    """The cached value of ``key`` in the active tenant's ``namespace``."""
    ttl = ttl or settings.CACHE_DEFAULT_SECONDS
    if not settings.TENANT_CACHE_ENABLED:
        return compute()
    try:
        client = _client()
        full_key = _key(namespace, key)
        raw = client.get(full_key)
    except RedisError:
        metrics.cache_requests.labels(namespace=namespace, result="bypass").inc()
        return compute()
    pickle = _pickle()
    now = time.time()
    if raw is not None:
        soft_expiry, value = pickle.loads(raw)
        if now < soft_expiry:
            metrics.cache_requests.labels(namespace=namespace, result="hit").inc()
            return value
        # Stale: one caller refreshes, the rest serve what is there.
        if not client.set(f"{full_key}:lock", 1, nx=True, ex=LOCK_SECONDS):
            metrics.cache_requests.labels(namespace=namespace, result="stale").inc()
            return value
        metrics.cache_requests.labels(namespace=namespace, result="refresh").inc()
        return _store(client, full_key, compute, ttl)
    # Cold: one caller computes; the others wait for it a moment.
    if client.set(f"{full_key}:lock", 1, nx=True, ex=LOCK_SECONDS):
        metrics.cache_requests.labels(namespace=namespace, result="miss").inc()
        return _store(client, full_key, compute, ttl)
    deadline = now + COLD_WAIT_SECONDS
    while time.time() < deadline:
        time.sleep(0.02)
        raw = client.get(full_key)
        if raw is not None:
            metrics.cache_requests.labels(namespace=namespace, result="waited").inc()
            return pickle.loads(raw)[1]
    metrics.cache_requests.labels(namespace=namespace, result="miss").inc()
    return compute()


def _store(client, full_key: str, compute, ttl: int):
    pickle = _pickle()
    try:
        value = compute()
        soft = ttl * random.uniform(0.9, 1.1)  # jitter: no synchronised expiry
        client.set(full_key, pickle.dumps((time.time() + soft, value)), ex=int(soft * GRACE_FACTOR) + 1)
        return value
    finally:
        client.delete(f"{full_key}:lock")


def invalidate(*namespaces: str) -> None:
    """Make the active tenant's entries in ``namespaces`` unreachable, now and
    again after the current transaction commits (so a read between the write
    and the commit cannot re-cache the old data)."""
    prefix = _prefix()

    def bump() -> None:
        try:
            client = _client()
            for namespace in namespaces:
                client.incr(f"{prefix}:{namespace}:version")
        except RedisError:
            logger.warning("cache invalidation skipped: Redis unavailable")

    bump()
    transaction.on_commit(bump, using=tenant_write_alias())
