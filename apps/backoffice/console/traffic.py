"""Per-tenant request rate and recent errors, for the operator console.

Nothing else records traffic per tenant: Prometheus series are labelled by
plan, not tenant (tenant labels would be an unbounded set), and the request
log goes to stdout, not to anything the console can query. So each tenant
request is counted in process, and a flusher thread per process writes what
it gathered every TRAFFIC_FLUSH_SECONDS in ONE pipelined Redis round trip
(the request itself never waits on Redis):

* a per-minute hash ``<prefix>:traffic:<tenant id>:<minute>`` with the
  request count, 4xx and 5xx counts and the summed duration (ms);
* the tenant's score in a per-minute sorted set (the "top tenants" table);
* for a 5xx, an entry in the tenant's capped list of recent errors.

Everything expires (buckets after an hour, errors after a day), so the
memory is bounded by active tenants x minutes kept. The flush is time
bounded (TRAFFIC_REDIS_TIMEOUT_SECONDS); after a Redis error (this
flusher's or another caller's in the process, ``apps.caching.health``) the
gathered counts are dropped and flushing pauses for TRAFFIC_RETRY_SECONDS
(the figures then undercount, which the tenant page says).

Why not derive from the audit log: it records writes that succeeded, per
tenant schema, not requests or errors.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings

from apps.caching import health
from apps.caching.connections import traffic_client
from apps.caching.flushers import Flusher

logger = logging.getLogger(__name__)

BUCKET_TTL_SECONDS = 3600
ERRORS_KEPT = 20
ERRORS_TTL_SECONDS = 86400
WINDOW_MINUTES = 15


def client(url: str | None = None) -> redis.Redis:
    return traffic_client(url)


def paused(url: str | None = None) -> bool:
    """Whether flushing is paused: Redis failed in this process within the
    last TRAFFIC_RETRY_SECONDS."""
    return health.suspect(settings.TRAFFIC_RETRY_SECONDS, url)


def _prefix() -> str:
    # In the cache's key space (prefix and version), so whatever clears this
    # deployment's cache keys clears these too.
    from django.core.cache import cache

    return cache.make_key("traffic")


def bucket_key(tenant_id: int, minute: int) -> str:
    return f"{_prefix()}:{tenant_id}:{minute}"


def top_key(minute: int) -> str:
    return f"{_prefix()}:top:{minute}"


def errors_key(tenant_id: int) -> str:
    return f"{_prefix()}:errors:{tenant_id}"


class _Buffer:
    """Counts gathered in this process and written to Redis by one flusher
    thread every TRAFFIC_FLUSH_SECONDS, in one pipelined round trip for all
    tenants seen meanwhile: a request pays a dictionary update under a lock,
    never a Redis round trip (the request path's Redis budget is spent on
    admission and the cache)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.buckets: dict[tuple[int, int], list[float]] = {}  # (tenant, minute) -> [requests, 4xx, 5xx, ms]
        self.errors: list[tuple[int, str]] = []

    def add(self, tenant_id: int, minute: int, status: int, duration_ms: float, error: str | None) -> None:
        with self.lock:
            counts = self.buckets.setdefault((tenant_id, minute), [0, 0, 0, 0.0])
            counts[0] += 1
            if status >= 500:
                counts[2] += 1
            elif status >= 400:
                counts[1] += 1
            counts[3] += duration_ms
            if error is not None and len(self.errors) < ERRORS_KEPT * 50:
                self.errors.append((tenant_id, error))
        # One flusher per process; a forked child (gunicorn worker) starts its own.
        flusher.ensure_started()

    def take(self) -> tuple[dict[tuple[int, int], list[float]], list[tuple[int, str]]]:
        with self.lock:
            buckets, errors = self.buckets, self.errors
            self.buckets, self.errors = {}, []
        return buckets, errors


buffer = _Buffer()


def flush() -> bool:
    """Write the counts gathered so far to Redis (one round trip). On a Redis
    error they are dropped (the console then undercounts, as it says) and
    writing pauses for TRAFFIC_RETRY_SECONDS."""
    buckets, errors = buffer.take()
    url = settings.REDIS_URL
    if paused(url):
        return False
    if not buckets and not errors:
        return True
    try:
        pipe = client(url).pipeline(transaction=False)
        tops: dict[int, dict[str, float]] = {}
        for (tenant_id, minute), (requests, client_errors, server_errors, duration_ms) in buckets.items():
            key = bucket_key(tenant_id, minute)
            pipe.hincrby(key, "requests", int(requests))
            if client_errors:
                pipe.hincrby(key, "client_errors", int(client_errors))
            if server_errors:
                pipe.hincrby(key, "server_errors", int(server_errors))
            pipe.hincrbyfloat(key, "duration_ms", round(duration_ms, 2))
            pipe.expire(key, BUCKET_TTL_SECONDS)
            tops.setdefault(minute, {})[str(tenant_id)] = requests
        for minute, scores in tops.items():
            for member, score in scores.items():
                pipe.zincrby(top_key(minute), score, member)
            pipe.expire(top_key(minute), BUCKET_TTL_SECONDS)
        for tenant_id in {tenant_id for tenant_id, _ in errors}:
            entries = [entry for owner, entry in errors if owner == tenant_id]
            pipe.lpush(errors_key(tenant_id), *entries)
            pipe.ltrim(errors_key(tenant_id), 0, ERRORS_KEPT - 1)
            pipe.expire(errors_key(tenant_id), ERRORS_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        health.record_failure(url)
        logger.warning("tenant traffic not counted", extra={"error": str(exc)[:200]})
        return False
    health.record_success(url)
    return True


flusher = Flusher("tenant-traffic-flusher", flush, lambda: settings.TRAFFIC_FLUSH_SECONDS)


def record(*, tenant_id: int, status: int, duration_ms: float, method: str = "", path: str = "",
           request_id: str = "", now: float | None = None) -> None:
    """Count one response of ``tenant_id`` (written to Redis by the flusher)."""
    now = time.time() if now is None else now
    error = None
    if status >= 500:
        error = json.dumps({"at": round(now, 3), "status": status, "method": method, "path": path[:200],
                            "request_id": request_id})
    buffer.add(tenant_id, int(now // 60), status, duration_ms, error)


class TenantTrafficMiddleware:
    """Count each tenant request (see the module doc). Sits outside the
    tenant middleware, so that its own answers (503 while suspended or
    moving) are counted too; the operators' host is not counted."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        tenant = getattr(request, "tenant", None)
        if tenant is not None and not tenant.is_public and tenant.pk is not None:
            record(tenant_id=tenant.pk, status=response.status_code,
                   duration_ms=(time.perf_counter() - started) * 1000, method=request.method,
                   path=request.path, request_id=getattr(request, "request_id", ""))
        return response


@dataclass
class TenantTraffic:
    available: bool
    minutes: int = WINDOW_MINUTES
    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    duration_ms: float = 0.0
    per_minute: list[int] = field(default_factory=list)  # oldest first
    recent_errors: list[dict] = field(default_factory=list)

    @property
    def requests_per_minute(self) -> float:
        return self.requests / self.minutes if self.minutes else 0.0

    @property
    def mean_ms(self) -> float | None:
        return self.duration_ms / self.requests if self.requests else None

    @property
    def error_ratio(self) -> float | None:
        return self.server_errors / self.requests if self.requests else None


def _minutes(now: float | None, minutes: int) -> list[int]:
    current = int((time.time() if now is None else now) // 60)
    return list(range(current - minutes + 1, current + 1))


def tenant_traffic(*, tenant_id: int, minutes: int = WINDOW_MINUTES, now: float | None = None) -> TenantTraffic:
    """The tenant's last ``minutes`` of traffic and its recent 5xx responses;
    ``available=False`` when Redis did not answer in time."""
    window = _minutes(now, minutes)
    try:
        pipe = client().pipeline(transaction=False)
        for minute in window:
            pipe.hmget(bucket_key(tenant_id, minute), "requests", "client_errors", "server_errors", "duration_ms")
        pipe.lrange(errors_key(tenant_id), 0, ERRORS_KEPT - 1)
        replies = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("tenant traffic unavailable", extra={"error": str(exc)[:200]})
        return TenantTraffic(available=False, minutes=minutes)
    traffic = TenantTraffic(available=True, minutes=minutes)
    for requests, client_errors, server_errors, duration in replies[:-1]:
        traffic.per_minute.append(int(requests or 0))
        traffic.requests += int(requests or 0)
        traffic.client_errors += int(client_errors or 0)
        traffic.server_errors += int(server_errors or 0)
        traffic.duration_ms += float(duration or 0)
    for raw in replies[-1]:
        try:
            traffic.recent_errors.append(json.loads(raw))
        except ValueError:
            continue
    return traffic


def top_tenants(*, limit: int = 10, minutes: int = WINDOW_MINUTES, now: float | None = None) -> list[tuple[int, int]] | None:
    """(tenant id, requests) of the busiest tenants over the window, or None
    when Redis did not answer in time."""
    try:
        pipe = client().pipeline(transaction=False)
        for minute in _minutes(now, minutes):
            pipe.zrevrange(top_key(minute), 0, limit * 3, withscores=True)
        replies = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("top tenants unavailable", extra={"error": str(exc)[:200]})
        return None
    totals: dict[int, float] = {}
    for reply in replies:
        for member, score in reply:
            tenant_id = int(member)
            totals[tenant_id] = totals.get(tenant_id, 0) + score
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [(tenant_id, int(score)) for tenant_id, score in ranked]
