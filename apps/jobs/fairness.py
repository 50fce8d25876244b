"""Fairness between tenants within a queue: at most N of a tenant's tasks run
at once per queue, N from the tenant's plan (``Plan.task_concurrency``).

Why this design. A Celery queue is FIFO: a tenant that enqueues 5,000
exports puts every other tenant's export behind them for as long as they
take to run. Per-tenant queues would fix the order but need a worker
consumer per tenant (or dynamic queue sets), which neither Redis nor
RabbitMQ consumers do cheaply with thousands of tenants; broker priorities
do not separate tenants. So the queue stays shared and the worker decides,
just before a tenant task's body runs:

* A slot per running task in a Redis sorted set per (queue, tenant), scored
  by its lease deadline. A task takes a slot or, when the tenant already
  runs its plan's limit, is *parked*: its message (name, arguments, headers,
  attempt count) goes to a per-(queue, tenant) list in Redis and the broker
  message is acknowledged, so the worker moves on at once instead of
  sleeping on it or spinning it through the queue again and again (a
  countdown would do both: Celery holds ETA messages in the worker's memory,
  and RabbitMQ's quorum queues cannot delay on a direct exchange).
* A task that ends (success, failure, retry) frees its slot and, in the
  same script, takes the oldest parked message of its tenant, which it
  publishes to the tail of the queue. Park and release are single Lua
  scripts, so a message is never parked after the last release that could
  have woken it.
* Leases, not counters: a running task renews its slot every lease / 3
  from a thread; a killed worker stops renewing and its slot lapses within
  one lease (30 s by default), so a dead worker cannot leak a slot. A slot
  held by the same task id (the broker redelivering a dead worker's message)
  is taken over, not counted twice.
* ``fairness_sweep`` (beat, every few seconds) wakes parked messages of a
  tenant whose slots lapsed without a release, and puts back messages whose
  re-publisher died between taking and publishing them.

Composition: late acknowledgement is kept (a parked message is acknowledged
only after it is stored in Redis; a crash in between runs it twice, which
idempotent task bodies allow); retries and dead letters are unchanged (a
parked message keeps its attempt count and task id); a tenant whose writes
are frozen for a move retries as before, without taking a slot. If Redis
does not answer, tasks run unlimited (fail open): fairness is a scheduling
nicety, never a reason to stop work.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from celery import current_app
from django.conf import settings

from apps.caching import health
from apps.caching.flushers import Flusher

logger = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0
REPUBLISH_GRACE_SECONDS = 60.0
LIMIT_CACHE_SECONDS = 10.0

# KEYS: slots, parked, registry, limit. ARGV: now, lease, limit ('' when the
# caller does not know it), task id, message.
# -> 1 slot taken, 0 message parked, 2 limit unknown (nothing done), 3 no limit.
_ACQUIRE = """
local limit = tonumber(ARGV[3])
if limit then
  redis.call('SET', KEYS[4], limit, 'EX', 30)
else
  limit = tonumber(redis.call('GET', KEYS[4]))
  if not limit then return 2 end
end
if limit <= 0 then return 3 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local deadline = tonumber(ARGV[1]) + tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], deadline, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) + 1000)
  return 1
end
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], KEYS[2])
return 0
"""
TAKEN, PARKED, UNKNOWN, UNLIMITED = 1, 0, 2, 3

# KEYS: slots, parked, republishing. ARGV: now, limit, task id ('' for none).
# Frees the task's slot, then moves as many parked messages as there are
# free slots to the republishing set (scored by now) and returns them.
_RELEASE = """
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[1], ARGV[3]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local out = {}
while free > 0 do
  local message = redis.call('LPOP', KEYS[2])
  if not message then break end
  redis.call('ZADD', KEYS[3], ARGV[1], message)
  table.insert(out, message)
  free = free - 1
end
return out
"""


# KEYS: registry, parked. Forget an empty parked list, unless a park refilled it.
_FORGET_IF_EMPTY = """
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], KEYS[2]) end
return 0
"""


@dataclass(frozen=True)
class Slot:
    queue: str
    tenant_id: int
    task_id: str
    limit: int


def _prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:fair"


def _keys(queue: str, tenant_id: int) -> tuple[str, str]:
    base = f"{_prefix()}:{queue}:{tenant_id}"
    return f"{base}:slots", f"{base}:parked"


def _limit_key(tenant_id: int) -> str:
    return f"{_prefix()}:limit:{tenant_id}"


def _registry_key() -> str:
    return f"{_prefix()}:parked-lists"


def _republishing_key() -> str:
    return f"{_prefix()}:republishing"


def lease_seconds() -> float:
    return float(current_app.conf.get("fairness_lease_seconds") or DEFAULT_LEASE_SECONDS)


def _client(url: str | None = None):
    from apps.caching.connections import redis_client

    return redis_client(url)


# --- the plan's limit -----------------------------------------------------

_limits: dict[int, tuple[float, int]] = {}


def tenant_limit(tenant_id: int) -> int:
    """The tenant's plan's task concurrency per queue (0: unlimited).

    Cached in the process for a few seconds: every parked message asks, and
    a plan change may take that long to apply to running queues."""
    now = time.monotonic()
    cached = _limits.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    from apps.tenancy.models import Tenant

    limit = Tenant.objects.filter(pk=tenant_id).values_list("plan__task_concurrency", flat=True).first() or 0
    _limits[tenant_id] = (now + LIMIT_CACHE_SECONDS, limit)
    return limit


# --- lease renewal ----------------------------------------------------------

_held: dict[tuple[str, str], float] = {}  # (slots key, task id) -> lease seconds
_held_lock = threading.Lock()


def _renew() -> None:
    with _held_lock:
        held = list(_held)
    if not held:
        return
    try:
        lease = lease_seconds()
        deadline = time.time() + lease
        pipe = _client().pipeline(transaction=False)
        for key, task_id in held:
            pipe.zadd(key, {task_id: deadline}, xx=True)
            pipe.pexpire(key, int(lease * 1000) + 1000)
        pipe.execute()
    except Exception:  # the next round tries again; a lapse only lets one more task in
        logger.warning("fairness lease renewal failed", exc_info=True)


_renewer = Flusher("fairness-lease", _renew, lambda: lease_seconds() / 3)


def _hold(key: str, task_id: str) -> None:
    with _held_lock:
        _held[(key, task_id)] = 1.0
    # Started in the process that runs tasks (again after a prefork fork, as
    # threads do not survive one).
    _renewer.ensure_started()


def _unhold(key: str, task_id: str) -> None:
    with _held_lock:
        _held.pop((key, task_id), None)


# --- acquire / release ------------------------------------------------------


# After Redis fails (here or for another caller in this process,
# ``apps.caching.health``), this process runs tasks unlimited for a while
# instead of waiting out a timeout (REDIS_TIMEOUT_SECONDS) on every message.
REDIS_RETRY_SECONDS = 5.0


class FairnessUnavailable(Exception):
    pass


def _try(*, queue: str, tenant_id, task_id: str, limit: int | None, message: dict) -> int:
    url = settings.REDIS_URL
    if health.suspect(REDIS_RETRY_SECONDS, url):
        raise FairnessUnavailable("Redis failed recently")
    slots, parked = _keys(queue, tenant_id)
    try:
        outcome = _client(url).eval(_ACQUIRE, 4, slots, parked, _registry_key(), _limit_key(tenant_id), time.time(),
                                 lease_seconds(), "" if limit is None else limit, task_id,
                                 json.dumps(message, default=str))
    except Exception:
        health.record_failure(url)
        raise
    health.record_success(url)
    return outcome


def acquire(task, *, tenant_id: int) -> Slot | None | bool:
    """Before a tenant task's body (in the pool process): a Slot to release
    after it; None when the task needs none (no broker delivery, unlimited
    plan, Redis down); False when the message was parked (the caller
    acknowledges it without running the body)."""
    request = task.request
    delivery = getattr(request, "delivery_info", None) or {}
    queue = delivery.get("routing_key") or ""
    if not queue or getattr(request, "called_directly", False) or not request.id:
        return None
    limit = tenant_limit(tenant_id)
    message = {"task": task.name, "id": request.id, "args": list(request.args or ()),
               "kwargs": dict(request.kwargs or {}), "headers": _headers(task.header),
               "retries": request.retries or 0, "queue": queue}
    try:
        outcome = _try(queue=queue, tenant_id=tenant_id, task_id=request.id, limit=limit, message=message)
    except FairnessUnavailable:
        return None
    except Exception:
        logger.warning("fairness: Redis unavailable, running without a tenant limit", exc_info=True)
        return None
    if outcome == PARKED:
        logger.info("task parked: tenant at its concurrency limit",
                    extra={"task": task.name, "task_id": request.id, "tenant_id": tenant_id, "queue": queue,
                           "limit": limit})
        return False
    if outcome != TAKEN:
        return None
    slots, _ = _keys(queue, tenant_id)
    _hold(slots, request.id)
    return Slot(queue=queue, tenant_id=tenant_id, task_id=request.id, limit=limit)


def park_on_arrival(task, message, body) -> bool:
    """In the worker's main process, as a message arrives: True when it was
    parked (and must be acknowledged, not run).

    Deciding here, before the message goes to a pool process, is what makes
    a flood cheap to set aside: a parked message costs one Redis call in the
    consumer instead of a round trip through the pool. The limit is the one
    the pool processes last stored in Redis (they read it from the plan);
    until one did, the message goes on and the pool process decides."""
    headers = message.headers or {}
    tenant_id = headers.get("tenant_id")
    queue = (message.delivery_info or {}).get("routing_key") or ""
    if not tenant_id or not queue or headers.get("eta") or not headers.get("id"):
        return False
    try:
        args, kwargs, _ = body if isinstance(body, tuple | list) and len(body) == 3 else message.decode()
        envelope = {"task": task.name, "id": headers["id"], "args": list(args or ()), "kwargs": dict(kwargs or {}),
                    "headers": _headers(headers.get), "retries": headers.get("retries") or 0, "queue": queue}
        return _try(queue=queue, tenant_id=tenant_id, task_id=headers["id"], limit=None,
                    message=envelope) == PARKED
    except FairnessUnavailable:
        return False
    except Exception:  # undecodable or Redis down: the pool process decides, as for any message
        logger.warning("fairness: no decision on arrival", exc_info=True)
        return False


def fair_strategy(task, app, consumer, **options):
    """Celery's default strategy, with tenant messages over their limit
    parked on arrival (``PlatformTask.Strategy``)."""
    from celery.worker.strategy import default

    handle = default(task, app, consumer, **options)
    if not getattr(task, "tenant_scoped", False):
        return handle
    connection_errors = consumer.connection_errors

    def handle_fairly(message, body, ack, reject, callbacks, **kwargs):
        if park_on_arrival(task, message, body):
            ack(logger, connection_errors)  # as celery.worker.request.Request.acknowledge calls it
            return None
        return handle(message, body, ack, reject, callbacks, **kwargs)

    return handle_fairly


def release(slot: Slot) -> int:
    """After the body: free the slot and re-publish what it wakes."""
    slots, parked = _keys(slot.queue, slot.tenant_id)
    _unhold(slots, slot.task_id)
    return _wake(slots, parked, slot.limit, slot.task_id)


def _wake(slots: str, parked: str, limit: int, task_id: str = "") -> int:
    url = settings.REDIS_URL
    if health.suspect(REDIS_RETRY_SECONDS, url):
        return 0  # the slot lapses with its lease; the sweep wakes what it held back
    try:
        messages = _client(url).eval(_RELEASE, 3, slots, parked, _republishing_key(), time.time(), limit, task_id)
    except Exception:
        health.record_failure(url)
        logger.warning("fairness: Redis unavailable at release; the slot lapses with its lease", exc_info=True)
        return 0
    health.record_success(url)
    for raw in messages:
        try:
            _republish(raw)
        except Exception:  # the broker is down: the sweep re-parks it after a grace period
            logger.warning("fairness: could not re-publish a parked task", exc_info=True)
    return len(messages)


def _republish(raw: bytes | str) -> None:
    message = json.loads(raw)
    task = current_app.tasks[message["task"]]
    # Through the task's own apply_async: the same headers (tenant, request
    # id, trace context), task id and attempt count, at the tail of its queue.
    task.apply_async(args=message["args"], kwargs=message["kwargs"], task_id=message["id"],
                     headers=message["headers"], queue=message["queue"], retries=message["retries"])
    _client().zrem(_republishing_key(), raw)


def _headers(read) -> dict:
    """What a re-published message carries over: tenant, request, user, trace,
    and what its job record and batch know it by."""
    names = ("tenant_id", "tenant_slug", "request_id", "user_id", "traceparent", "tracestate", "job_run", "batch_id",
             "batch_callback")
    return {name: value for name in names if (value := read(name)) is not None}


def sweep() -> int:
    """Wake parked messages whose tenant has free slots (its holders' leases
    lapsed: killed workers), and re-park messages whose re-publisher died.
    Returns how many messages it re-published."""
    client = _client()
    now = time.time()
    stale = client.zrangebyscore(_republishing_key(), "-inf", now - REPUBLISH_GRACE_SECONDS)
    for raw in stale:
        message = json.loads(raw)
        _, parked = _keys(message["queue"], message["headers"].get("tenant_id"))
        if client.zrem(_republishing_key(), raw):
            client.lpush(parked, raw)
            client.sadd(_registry_key(), parked)
    woken = 0
    for key in client.smembers(_registry_key()):
        parked = key.decode() if isinstance(key, bytes) else key
        base = parked.removesuffix(":parked")
        tenant_id = int(base.rsplit(":", 1)[1])
        limit = tenant_limit(tenant_id) or 1_000_000  # unlimited now: wake them all
        woken += _wake(f"{base}:slots", parked, limit)
        client.eval(_FORGET_IF_EMPTY, 2, _registry_key(), parked)
    return woken


def in_flight(queue: str, tenant_id: int) -> int:
    """Live slots of a tenant on a queue (for tests, benchmarks and operators)."""
    slots, _ = _keys(queue, tenant_id)
    client = _client()
    client.zremrangebyscore(slots, "-inf", time.time())
    return client.zcard(slots)


def parked_count(queue: str, tenant_id: int) -> int:
    return _client().llen(_keys(queue, tenant_id)[1])
