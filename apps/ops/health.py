"""Readiness checks: one function per dependency, each bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from kombu import Connection

from apps.caching.connections import redis_client


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    redis_client().ping()


def check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        redis_client(url).ping()
        return
    with Connection(url, connect_timeout=settings.REDIS_TIMEOUT_SECONDS * 2) as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.REDIS_TIMEOUT_SECONDS * 2)


def check_alias(alias: str) -> Callable[[], None]:
    def check() -> None:
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close_if_unusable_or_obsolete()

    return check


# Without these the process cannot serve anyone: readiness fails (503).
CRITICAL_CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
}
# Without these requests are still served (caching bypassed, per-process rate
# limits, side effects kept in the outbox until the broker is back): the
# process stays in the load balancer and reports itself degraded.
DEGRADING_CHECKS: dict[str, Callable[[], None]] = {
    "redis": check_redis,
    "broker": check_broker,
}


def shard_checks() -> dict[str, Callable[[], None]]:
    """One check per shard primary and replica. A shard down affects only its
    tenants (they get 503), so it degrades readiness instead of failing it:
    taking every pod out of the load balancer would take all tenants down."""
    prefix = settings.SHARD_ALIAS_PREFIX
    return {alias: check_alias(alias) for alias in settings.DATABASES if alias.startswith(prefix)}


def _run(check: Callable[[], None]) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure is reported, never a 500
        result = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
    else:
        result = {"status": "up"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def run_checks() -> tuple[str, dict[str, dict]]:
    """Run every check: ("ready" | "degraded" | "unavailable", detail per dependency)."""
    results = {name: _run(check) for name, check in CRITICAL_CHECKS.items()}
    degrading = {name: _run(check) for name, check in {**DEGRADING_CHECKS, **shard_checks()}.items()}
    if any(r["status"] == "down" for r in results.values()):
        status = "unavailable"
    elif any(r["status"] == "down" for r in degrading.values()):
        status = "degraded"
    else:
        status = "ready"
    results.update(degrading)
    return status, results
