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


# The first round trip of a request: a hostname's version (and its entry,
# unless the caller already holds that version in memory), the versions of
# further scopes and plain keys (read-your-writes), all at once. Versions
# missing in Redis are created from the caller's clock (milliseconds): held
# in process memory, an entry must never meet its old version again after
# the counter was lost (eviction, a flush), and a counter counted up from 0
# would. A created version expires (a flood of made-up host names leaves
# nothing behind); when it is created again it is newer, which costs a miss.
VERSION_SECONDS = 7 * 24 * 3600
# KEYS: host version key, then ARGV[4] scope version keys, then plain keys.
# ARGV: entry base, entry suffix, version held by the caller, clock ms,
# count, lifetime of a created version (VERSION_SECONDS).
FRONT_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then
  version = ARGV[4]
  redis.call('SET', KEYS[1], version, 'EX', ARGV[6])
end
local entry = false
if version ~= ARGV[3] then entry = redis.call('GET', ARGV[1] .. version .. ARGV[2]) end
local result = {version, entry}
local scopes = tonumber(ARGV[5])
for i = 2, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if not value and i <= scopes + 1 then
    value = ARGV[4]
    redis.call('SET', KEYS[i], value, 'EX', ARGV[6])
  end
  result[i + 1] = value
end
return result
"""
FRONT_SCRIPT_SHA = hashlib.sha1(FRONT_SCRIPT.encode()).hexdigest()


@dataclass(frozen=True)
class Front:
    """What the first round trip found: the host's ``read`` (``raw`` is None
    when the caller's version is current, or when there is no entry), and
    the values of the further keys, in order."""

    read: Read
    version: str
    values: list[str | None]


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def read_front(version_key: str, base: str, *, held_version: str | None, scope_keys: list[str],
               plain_keys: list[str]) -> Front | None:
    """One round trip for the start of a request (see FRONT_SCRIPT); None
    when Redis is not to be used now."""
    generation = health.generation()
    if generation is None:
        return None
    keys = [version_key, *scope_keys, *plain_keys]
    args = [f"{base}:g{generation}:v", "", held_version or "", int(time.time() * 1000), len(scope_keys),
            VERSION_SECONDS]
    redis_client = client()
    try:
        try:
            version, raw, *values = redis_client.evalsha(FRONT_SCRIPT_SHA, len(keys), *keys, *args)
        except NoScriptError:
            version, raw, *values = redis_client.eval(FRONT_SCRIPT, len(keys), *keys, *args)
    except RedisError:
        health.report_failure()
        return None
    if health.generation() != generation:
        return None
    version = _text(version)
    values = [_text(v) for v in values] + [None] * (len(keys) - 1 - len(values))
    return Front(read=Read(key=f"{base}:g{generation}:v{version}", raw=raw, locked=False, generation=generation),
                 version=version, values=values)


def read_versions(version_keys: list[str]) -> list[str]:
    """The versions of these scopes (created when missing, as FRONT_SCRIPT
    does); raises RedisError."""
    keys = [f"{key_prefix()}:front:none", *version_keys]  # no host: a key no entry is stored under
    args = ["-", "", "", int(time.time() * 1000), len(version_keys), VERSION_SECONDS]
    _, _, *values = client().eval(FRONT_SCRIPT, len(keys), *keys, *args)
    return [_text(v) for v in values]


class PipelinedRead:
    """``read`` as one command of someone else's pipeline (the rate-limit
    round trip): ``add`` it, then hand ``done`` its reply. ``result`` is the
    Read, or None when the reply was unusable (the caller reads normally)."""

    def __init__(self, version_key: str, base: str, suffix: str, *, lock_seconds: int, generation: int):
        self.args = ([version_key], [f"{base}:g{generation}:v", suffix, lock_seconds])
        self.base, self.suffix, self.generation = base, suffix, generation
        self.result: Read | None = None

    def add(self, pipe) -> None:
        keys, args = self.args
        pipe.evalsha(READ_SCRIPT_SHA, len(keys), *keys, *args)

    def done(self, reply) -> None:
        if isinstance(reply, NoScriptError):
            return  # the caller's own read loads the script
        if isinstance(reply, Exception):
            if isinstance(reply, RedisError):
                health.report_failure()
            return
        if health.generation() != self.generation:
            return
        version, raw, locked = reply
        version = _text(version)
        self.result = Read(key=f"{self.base}:g{self.generation}:v{version}{self.suffix}", raw=raw,
                           locked=bool(locked), generation=self.generation)


def get_plain(key: str) -> str | None:
    """A plain key's value (text), or None when absent or Redis is not to be used."""
    generation = health.generation()
    if generation is None:
        return None
    try:
        value = client().get(key)
    except RedisError:
        health.report_failure()
        return None
    return _text(value) if health.generation() == generation else None


def set_plain(key: str, value: str, seconds: float) -> None:
    """Set a plain key for ``seconds`` (best effort, one round trip)."""
    if health.generation() is None:
        return
    try:
        client().set(key, value, px=max(1, int(seconds * 1000)))
    except RedisError:
        health.report_failure()


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
            _raise_versions(keys)
            return True
        except RedisError:
            health.report_failure()
            if not patient or time.monotonic() + RETRY_PAUSE_SECONDS >= deadline:
                return False
            time.sleep(RETRY_PAUSE_SECONDS)


# Raise each version by one; a missing one starts at the clock (ms), as
# FRONT_SCRIPT creates them: counted up from 0 again after a flush or an
# eviction, a version would meet values it had before, and entries held in
# process memory under those (apps.caching.local) would come back.
RAISE_SCRIPT = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('INCR', key) else redis.call('SET', key, ARGV[1]) end
end
return #KEYS
"""
RAISE_SCRIPT_SHA = hashlib.sha1(RAISE_SCRIPT.encode()).hexdigest()


def _raise_versions(keys: list[str]) -> None:
    redis_client, args = client(), [int(time.time() * 1000)]
    try:
        redis_client.evalsha(RAISE_SCRIPT_SHA, len(keys), *keys, *args)
    except NoScriptError:
        redis_client.eval(RAISE_SCRIPT, len(keys), *keys, *args)


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
        _raise_versions(sorted({key for _, key in rows}))  # raises when Redis is down: the rows stay
        PendingInvalidation.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        applied += len(rows)
