"""Unique jobs: of the messages that share a key, one runs per window.

A task declares it on its class (``@shared_task(base=PlatformTask,
unique_for=300)``): the key is the task's name, the tenant and the
arguments, or what its ``unique_key(args, kwargs)`` returns (the tenant is
always part of it, so a key never spans tenants). Any number of enqueues
with one key, through ``apply_async`` or an outbox row, give one run; the
others are acknowledged without running and recorded as ``skipped``.

Where it is decided: in the worker, just before the body (PlatformTask),
never where the message is made. A publish path (a request's commit, the
outbox relay) must not fail or wait when Redis is down, and an outbox row is
published once per row whatever was published before, so only the claim at
run time sees every message.

The claim is ``SET key <task id> NX`` with the window as expiry, in one Lua
script that also says who holds it; the holder's own retries and
redeliveries (same task id) go through. A claim lasts the whole window, from
the start of the run that took it: a message with the key that comes after
the run finished but within the window is still a duplicate; the window
should cover the run. A run that ends in the dead letters gives its claim
back, so the next message may try again.

Redis down: the claim goes to a row in the control plane (``UniqueClaim``,
primary key = the key) with one ``INSERT ... ON CONFLICT DO UPDATE ...
WHERE expired``. And a claim taken in Redis is checked against that table,
so a run started during an outage is not repeated when Redis is back. The
one gap: a claim that lived only in Redis when Redis went away is not seen
by a claim made in the database during the outage (one duplicate at most
per key and outage).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging

from django.conf import settings
from django.db import connections, router

from apps.caching import health

logger = logging.getLogger(__name__)

# KEYS: the key. ARGV: task id, window in ms. -> the holder's task id.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
DB_CLAIM_SQL = """
INSERT INTO jobs_uniqueclaim AS c (key, task_id, expires_at) VALUES (%s, %s, now() + make_interval(secs => %s))
ON CONFLICT (key) DO UPDATE SET task_id = EXCLUDED.task_id, expires_at = EXCLUDED.expires_at
    WHERE c.expires_at < now()
RETURNING task_id
"""
DB_HOLDER_SQL = "SELECT task_id FROM jobs_uniqueclaim WHERE key = %s AND expires_at >= now()"
# After Redis failed, the database answers for a while without asking Redis.
REDIS_RETRY_SECONDS = 5.0


def key_for(task, args, kwargs, tenant_id) -> str:
    """``<task>:<tenant or ->:<part>``; part from ``task.unique_key`` or a hash of the arguments."""
    make = getattr(task, "unique_key", None)
    if inspect.ismethod(make):  # a function given to @shared_task becomes a method of the task class
        make = make.__func__
    if make is not None:
        part = str(make(list(args or ()), dict(kwargs or {})))
    else:
        encoded = json.dumps([list(args or ()), dict(kwargs or {})], sort_keys=True, default=str)
        part = hashlib.sha256(encoded.encode()).hexdigest()[:32]
    return f"{task.name}:{tenant_id or '-'}:{part}"[:250]


def _redis_key(key: str) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:unique:{key}"


def _client():
    from apps.caching.connections import redis_client

    return redis_client()


def claim(key: str, task_id: str, seconds: float) -> str:
    """The task id that holds ``key`` now: ``task_id`` itself when this run
    may go. Redis first, the control plane when Redis does not answer."""
    url = settings.REDIS_URL
    if health.suspect(REDIS_RETRY_SECONDS, url):
        return _db_claim(key, task_id, seconds)
    try:
        holder = _client().eval(_CLAIM, 1, _redis_key(key), task_id, max(1, int(seconds * 1000)))
    except Exception as exc:
        health.record_failure(url)
        logger.warning("unique job: Redis unavailable, claiming in the database",
                       extra={"key": key, "error": str(exc)[:200]})
        return _db_claim(key, task_id, seconds)
    health.record_success(url)
    holder = holder.decode() if isinstance(holder, bytes) else holder
    if holder != task_id:
        return holder
    # Taken in Redis: unless a run started while Redis was away holds it here.
    other = _db_holder(key)
    if other is not None and other != task_id:
        release(key, task_id, database=False)
        return other
    return task_id


def _db_claim(key: str, task_id: str, seconds: float) -> str:
    alias = _alias()
    with connections[alias].cursor() as cursor:
        cursor.execute(DB_CLAIM_SQL, [key, task_id, float(seconds)])
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        cursor.execute(DB_HOLDER_SQL, [key])
        row = cursor.fetchone()
    # Lapsed between the two statements: nobody holds it, try once more.
    return row[0] if row is not None else _db_claim_once_more(key, task_id, seconds)


def _db_claim_once_more(key: str, task_id: str, seconds: float) -> str:
    with connections[_alias()].cursor() as cursor:
        cursor.execute(DB_CLAIM_SQL, [key, task_id, float(seconds)])
        row = cursor.fetchone()
    return row[0] if row is not None else ""


def _db_holder(key: str) -> str | None:
    with connections[_alias()].cursor() as cursor:
        cursor.execute(DB_HOLDER_SQL, [key])
        row = cursor.fetchone()
    return row[0] if row is not None else None


def release(key: str, task_id: str, *, database: bool = True) -> None:
    """Give the claim back if ``task_id`` holds it (a run that failed for good)."""
    try:
        _client().eval(_RELEASE, 1, _redis_key(key), task_id)
    except Exception:  # it lapses with its window
        logger.warning("unique job: claim not released in Redis", extra={"key": key})
    if database:
        from .models import UniqueClaim

        UniqueClaim.objects.using(_alias()).filter(key=key, task_id=task_id).delete()


def holder(key: str) -> str | None:
    """Who holds ``key`` (for tests and operators): Redis, else the database."""
    try:
        value = _client().get(_redis_key(key))
    except Exception:
        value = None
    if value is not None:
        return value.decode() if isinstance(value, bytes) else value
    return _db_holder(key)


def _alias() -> str:
    from .models import UniqueClaim

    return router.db_for_write(UniqueClaim)
