"""Readiness checks: one function per dependency, each bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import redis
from django.conf import settings
from django.db import connections
from kombu import Connection


@lru_cache(maxsize=8)
def _redis_client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    _redis_client(settings.REDIS_URL, settings.REDIS_TIMEOUT_SECONDS).ping()


def check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        _redis_client(url, settings.REDIS_TIMEOUT_SECONDS).ping()
        return
    with Connection(url, connect_timeout=settings.REDIS_TIMEOUT_SECONDS * 2) as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.REDIS_TIMEOUT_SECONDS * 2)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
}


def run_checks() -> tuple[bool, dict[str, dict]]:
    """Run every check; return (all healthy, detail per dependency)."""
    results: dict[str, dict] = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure means "not ready", never a 500
            healthy = False
            results[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"status": "up"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return healthy, results
