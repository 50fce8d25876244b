"""Versioned cache entries in Redis, safe across Redis outages.

A *scope* (a tenant's namespace, a hostname, the flag set) has a version
counter; its entries live under ``<base>:g<generation>:v<version><suffix>``.
Writers make a scope's entries unreachable by raising its version
(``invalidate``); the process-wide generation (``apps.caching.health``) makes
every entry written before a Redis outage unreachable.

Costs on the hot path: the generation is local (no round trip); the version
and the entry are read in one round trip (a Lua script), which can also take
the recompute lock on a miss. A store and its lock release are one pipeline.

Every function here degrades instead of raising: a Redis error marks the
process suspect (see ``health``) and the caller computes from the database.
An invalidation that cannot reach Redis is recorded in the control plane and
applied by the sweep (``apply_pending``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django_redis import get_redis_connection
from redis.exceptions import NoScriptError, RedisError

from . import health

logger = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 0.05

READ_SCRIPT = """
local version = redis.call('GET', KEYS[1]) or '0'
local key = ARGV[1] .. version .. ARGV[2]
local entry = redis.call('GET', key)
local locked = 0
if not entry and tonumber(ARGV[3]) > 0 then
  if redis.call('SET', key .. ':lock', '1', 'NX', 'EX', ARGV[3]) then locked = 1 end
end
return {version, entry, locked}
"""


def client():
    return get_redis_connection("default")


def key_prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:tc"


@dataclass(frozen=True)
class Read:
    """What one versioned read found. ``key`` is where to store a recomputed
    value: under the version and generation seen *before* computing, so a
    value computed from data that a concurrent write replaced lands where no
    reader looks any more."""

    key: str
    raw: bytes | None
    locked: bool  # this caller holds ``key``'s recompute lock
    generation: int

    @property
    def lock_key(self) -> str:
        return f"{self.key}:lock"


READ_SCRIPT_SHA = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()


def _run_read_script(redis_client, keys: list[str], args: list) -> list:
    try:
        return redis_client.evalsha(READ_SCRIPT_SHA, len(keys), *keys, *args)
    except NoScriptError:  # a restarted Redis forgot it; EVAL loads it again
        return redis_client.eval(READ_SCRIPT, len(keys), *keys, *args)


def read(version_key: str, base: str, suffix: str = "", *, lock_seconds: int = 0) -> Read | None:
    """Read the current entry of a scope, or None: Redis is not to be used now."""
    generation = health.generation()
    if generation is None:
        return None
    try:
        version, raw, locked = _run_read_script(client(), [version_key],
                                                [f"{base}:g{generation}:v", suffix, lock_seconds])
    except RedisError:
        health.report_failure()
        return None
    if health.generation() != generation:
        return None  # Redis failed (or the generation moved) while this answer was on its way
    version = version.decode() if isinstance(version, bytes) else version
    return Read(key=f"{base}:g{generation}:v{version}{suffix}", raw=raw, locked=bool(locked), generation=generation)


def peek(found: Read) -> bytes | None | bool:
    """The entry at ``found.key`` now, for a caller waiting on another's
    recompute: the bytes, None while not there yet, or False when Redis is
    not to be used any more (stop waiting, compute)."""
    if health.generation() != found.generation:
        return False
    try:
        raw = client().get(found.key)
    except RedisError:
        health.report_failure()
        return False
    return raw if health.generation() == found.generation else False


def take_lock(found: Read, seconds: int) -> bool | None:
    """Try to take ``found``'s recompute lock: True/False, or None when Redis is not usable."""
    if health.generation() != found.generation:
        return None
    try:
        return bool(client().set(found.lock_key, 1, nx=True, ex=seconds))
    except RedisError:
        health.report_failure()
        return None


def store(found: Read, raw: bytes, ttl: int, *, release_lock: bool = False) -> None:
    """Keep ``raw`` at ``found.key`` for ``ttl`` seconds (best effort, one round trip)."""
    if health.generation() != found.generation:
        return  # unreachable under the current generation anyway; the lock expires by itself
    try:
        pipe = client().pipeline(transaction=False)
        pipe.set(found.key, raw, ex=ttl)
        if release_lock:
            pipe.delete(found.lock_key)
        pipe.execute()
    except RedisError:
        health.report_failure()


def release_lock(found: Read) -> None:
    """Give up ``found``'s recompute lock (the recompute failed)."""
    if health.generation() != found.generation:
        return
    try:
        client().delete(found.lock_key)
    except RedisError:
        health.report_failure()


# --- invalidation -------------------------------------------------------------


def invalidate(version_keys: Iterable[str], *, using: str) -> None:
    """Raise the versions of these scopes now and again after the transaction
    on ``using`` (the database that holds the change) commits.

    The raise after commit is the one that matters: a concurrent reader may
    re-cache the old rows until the commit. The immediate one makes reads
    inside the same transaction, and transactions that never commit (tests),
    miss too; it is skipped while Redis is suspect so a paused Redis does not
    hold the transaction's locks.

    The raise after commit gives up only once Redis has failed for a whole
    REDIS_TIMEOUT_SECONDS (it retries quick failures such as a refused
    connection within that budget). An outage that long fails a probe in
    every live process (``apps.caching.health``), so every process raises the
    generation before it serves from Redis again: the lost raise cannot lead
    to a stale read. It is also recorded in the control plane
    (``PendingInvalidation``) for the sweep, which covers a process that alone
    could not reach Redis (a partial partition, a ``manage.py`` run).
    """
    keys = sorted(set(version_keys))
    if not keys:
        return
    if health.generation() is not None:
        _bump(keys, patient=False)
    transaction.on_commit(lambda: _bump(keys, patient=True) or _record(keys), using=using)


def _bump(keys: list[str], *, patient: bool) -> bool:
    budget = settings.REDIS_TIMEOUT_SECONDS
    if health.outage_seconds() >= budget:
        return False  # every process has seen this outage already; do not wait it out again
    deadline = time.monotonic() + budget
    while True:
        try:
            pipe = client().pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
            pipe.execute()
            return True
        except RedisError:
            health.report_failure()
            if not patient or time.monotonic() + RETRY_PAUSE_SECONDS >= deadline:
                return False
            time.sleep(RETRY_PAUSE_SECONDS)


def _record(keys: list[str]) -> None:
    from .models import PendingInvalidation

    logger.warning("cache invalidation deferred: Redis unavailable", extra={"keys": keys[:10]})
    try:
        PendingInvalidation.objects.bulk_create([PendingInvalidation(version_key=key) for key in keys])
    except Exception:
        # Only the generation raise on recovery covers this process now.
        logger.exception("cache invalidation could not be recorded either")


def apply_pending(*, batch: int = 500) -> int:
    """Apply recorded invalidations (the sweep). Returns how many were applied.

    Rows are read, applied in Redis, then deleted, without a transaction
    around the Redis call (no network I/O under row locks). Two sweeps at
    once raise some versions twice, which only costs a cache miss.
    """
    from .models import PendingInvalidation

    applied = 0
    while True:
        rows = list(PendingInvalidation.objects.order_by("pk").values_list("pk", "version_key")[:batch])
        if not rows:
            return applied
        pipe = client().pipeline(transaction=False)
        for key in sorted({key for _, key in rows}):
            pipe.incr(key)
        pipe.execute()  # raises when Redis is down: the rows stay for the next sweep
        PendingInvalidation.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        applied += len(rows)
