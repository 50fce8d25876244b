"""The shared pause after a Redis failure (``health.suspect``): every caller
with a fallback skips Redis for its own period after any of them saw a
failure, and any success ends the pause."""

from __future__ import annotations

import time

import pytest

from apps.caching import health
from apps.caching.connections import _client
from apps.ratelimit import buckets
from tests.support import free_port


@pytest.fixture
def dead_redis(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    yield settings.REDIS_URL
    health.record_success(settings.REDIS_URL)
    _client.cache_clear()


def test_a_pause_lasts_each_callers_own_period(dead_redis, monkeypatch):
    assert not health.suspect(60)
    now = time.monotonic()
    health.record_failure()
    monkeypatch.setattr(time, "monotonic", lambda: now + 1.5)
    assert health.suspect(2) and not health.suspect(1)
    other = f"redis://127.0.0.1:{free_port()}/0"
    assert not health.suspect(60, other)  # another Redis is not suspect
    health.record_success()
    assert not health.suspect(60)


def test_a_failure_seen_by_one_caller_pauses_the_limiter_and_a_success_ends_it(dead_redis, settings, monkeypatch):
    from apps.backoffice.console import traffic

    monkeypatch.setattr(buckets, "local_buckets", buckets.LocalBuckets())
    traffic.buffer.take()
    traffic.record(tenant_id=1, status=200, duration_ms=1)
    assert not traffic.flush()  # refused at once: the pause starts
    calls = []

    def remote(url):
        calls.append(url)
        return "redis"

    assert buckets.redis_or_local(remote, lambda: "local") == "local" and not calls
    health.record_success()
    assert buckets.redis_or_local(remote, lambda: "local") == "redis" and calls == [dead_redis]
