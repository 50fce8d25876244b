"""Read-through caching of tenant data.

* Tenant-scoped keys: every key contains the active tenant's id, taken from
  the tenant context, never from the caller; one tenant cannot address
  another's entries.
* Versioned namespaces: writers bump a namespace's version (``invalidate``)
  instead of finding keys to delete; old entries just age out. The version
  and the entry are read in one round trip (``apps.caching.versioned``).
* TTL with jitter: entries of one namespace do not all expire together.
* Stampede protection: an entry carries a soft expiry before its hard TTL.
  When it goes stale, one caller takes a short lock and recomputes while the
  others keep serving the stale value; on a cold miss the others wait
  briefly for the winner instead of all hitting the database.
* Redis down, paused or slow at any step: the caller computes from the
  database (the cache is an optimisation), and the process leaves Redis
  alone until it answers again. Entries from before an outage are never
  served after it (``apps.caching.health``: keys carry the cache generation).
"""

from __future__ import annotations

import contextvars
import pickle
import random
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from apps.caching import health, versioned
from apps.observability import metrics

from .context import require_active_tenant
from .routers import tenant_write_alias

LOCK_SECONDS = 10
COLD_WAIT_SECONDS = 1.0
GRACE_FACTOR = 2  # a stale entry stays servable this many soft-TTLs longer


def _prefix(tenant_id: int) -> str:
    return f"{versioned.key_prefix()}:t{tenant_id}"


def _version_key(tenant_id: int, namespace: str) -> str:
    return f"{_prefix(tenant_id)}:{namespace}:version"


def _count(namespace: str, result: str) -> None:
    metrics.cache_requests.labels(namespace=namespace, result=result).inc()


# Reads sent ahead in another round trip of this request (``prefetch``):
# (tenant id, namespace, key) -> the Read. Set per request by the tenant
# middleware (``request_scope``), so nothing prefetched outlives its request.
_prefetched: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tenant_cache_prefetched", default=None)


def request_scope() -> contextvars.Token:
    """Start a request's prefetch slot; pass the token to ``end_request_scope``."""
    return _prefetched.set({})


def end_request_scope(token: contextvars.Token) -> None:
    """End the request's prefetch slot. A prefetch its view never used (the
    request was refused) gives back the recompute lock its read took on a
    miss, or every reader of that key would wait for a recompute that never
    comes."""
    left = _prefetched.get() or {}
    _prefetched.reset(token)
    for pending in left.values():
        if pending.result is not None and pending.result.locked:
            versioned.release_lock(pending.result)


def prefetch(namespace: str, key: str) -> versioned.PipelinedRead | None:
    """The read of ``key`` as a command for another pipeline of this request
    (the rate-limit round trip), so that a cached read costs no round trip
    of its own; ``get_or_compute`` then uses its answer. None when there is
    nothing to send (cache off, Redis suspect, no request scope)."""
    slots = _prefetched.get()
    generation = health.generation()
    if not settings.TENANT_CACHE_ENABLED or slots is None or generation is None:
        return None
    tenant_id = require_active_tenant().pk
    pending = versioned.PipelinedRead(_version_key(tenant_id, namespace), f"{_prefix(tenant_id)}:{namespace}",
                                      f":{key}", lock_seconds=LOCK_SECONDS, generation=generation)
    slots[(tenant_id, namespace, key)] = pending
    return pending


def _read(tenant_id: int, namespace: str, key: str) -> versioned.Read | None:
    slots = _prefetched.get()
    pending = slots.pop((tenant_id, namespace, key), None) if slots else None
    if pending is not None and pending.result is not None and pending.result.generation == health.generation():
        return pending.result
    return versioned.read(_version_key(tenant_id, namespace), f"{_prefix(tenant_id)}:{namespace}", f":{key}",
                          lock_seconds=LOCK_SECONDS)


def get_or_compute(namespace: str, key: str, compute: Callable[[], Any], *, ttl: int | None = None) -> Any:
    """The cached value of ``key`` in the active tenant's ``namespace``."""
    ttl = ttl or settings.CACHE_DEFAULT_SECONDS
    if not settings.TENANT_CACHE_ENABLED:
        return compute()
    tenant_id = require_active_tenant().pk
    found = _read(tenant_id, namespace, key)
    if found is None:
        _count(namespace, "bypass")
        return compute()
    if found.raw is not None:
        soft_expiry, value = pickle.loads(found.raw)
        if time.time() < soft_expiry:
            _count(namespace, "hit")
            return value
        # Stale: one caller refreshes, the rest serve what is there.
        if versioned.take_lock(found, LOCK_SECONDS) is False:
            _count(namespace, "stale")
            return value
        _count(namespace, "refresh")
        return _store(found, compute, ttl)
    if found.locked:  # cold, and this caller won the lock (taken by the read)
        _count(namespace, "miss")
        return _store(found, compute, ttl)
    # Cold, another caller computes; wait for it a moment.
    deadline = time.time() + COLD_WAIT_SECONDS
    while time.time() < deadline:
        time.sleep(0.02)
        raw = versioned.peek(found)
        if raw is False:
            _count(namespace, "bypass")
            return compute()
        if raw is not None:
            _count(namespace, "waited")
            return pickle.loads(raw)[1]
    _count(namespace, "miss")
    return compute()


def _store(found: versioned.Read, compute: Callable[[], Any], ttl: int) -> Any:
    try:
        value = compute()
    except BaseException:
        versioned.release_lock(found)
        raise
    soft = ttl * random.uniform(0.9, 1.1)  # jitter: no synchronised expiry
    versioned.store(found, pickle.dumps((time.time() + soft, value)), int(soft * GRACE_FACTOR) + 1,
                    release_lock=True)
    return value


def invalidate(*namespaces: str) -> None:
    """Make the active tenant's entries in ``namespaces`` unreachable, now and
    after the tenant shard's transaction commits. For tenant data (on the
    shard); control-plane writes use ``invalidate_tenant``."""
    tenant_id = require_active_tenant().pk
    versioned.invalidate([_version_key(tenant_id, ns) for ns in namespaces], using=tenant_write_alias())


def invalidate_tenant(tenant_id: int, *namespaces: str, using: str = "default") -> None:
    """Like ``invalidate``, for a write to the database ``using`` (the control
    plane by default: members, API keys, plans) that names its tenant.

    The raise runs after *that* database commits: registered on the shard's
    transaction instead, it would run before the control-plane commit and a
    concurrent read could cache the old rows again under the new version.
    Taking the tenant from the caller is safe here: an invalidation only
    makes entries unreachable, it cannot read them.
    """
    versioned.invalidate([_version_key(tenant_id, ns) for ns in namespaces], using=using)
